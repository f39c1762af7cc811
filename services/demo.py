"""The demo of `tasktide dev --demo`: a worker for the example app and the web dashboard (on
127.0.0.1:8080, or another free port when that one is taken), tasks submitted in a batch, and
their results streaming in over Watch, shown with a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tasktide import AsyncClient, ClientSettings, TaskState
from tasktide._spec import build_spec
from tasktide.cli import load_app
from tasktide.v1 import task_pb2
from tasktide_services.common.redis_server import free_port

DASHBOARD_PORT = 8080


def dashboard_port() -> int:
    """DASHBOARD_PORT on loopback if nothing listens on it, else a free port of the system's choosing."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the dashboard's server binds
        try:
            s.bind(("127.0.0.1", DASHBOARD_PORT))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return free_port()
    return DASHBOARD_PORT


async def run_demo(address: str, app_target: str, count: int, token: str = "", dashboard_token: str = "") -> None:
    """Start a worker for `app_target` and a dashboard, submit `count` tasks and show their results
    as they come. `token`: what the worker and the demo's client send, and `dashboard_token` what
    the dashboard sends, when the platform checks tokens."""
    console = Console()
    env = {**os.environ, "TASKTIDE_ADDRESS": address}
    if token:
        env["TASKTIDE_TOKEN"] = token
    dashboard = await _start_dashboard(console, {**env, "TASKTIDE_TOKEN": dashboard_token} if dashboard_token else env)
    try:
        await _run(console, env, address, app_target, count)
    finally:
        if dashboard is not None:
            with contextlib.suppress(ProcessLookupError):
                dashboard.terminate()
            await dashboard.wait()


async def _start_dashboard(console: Console, env: dict[str, str]) -> asyncio.subprocess.Process | None:
    """`tasktide dashboard` for the platform at env's TASKTIDE_ADDRESS, on loopback; None (said on
    the console) when no port can be had: the demo goes on without it."""
    try:
        port = dashboard_port()
    except OSError as exc:
        console.print(f"[bold]demo[/]: no dashboard: {exc}")
        return None
    argv = ["-m", "tasktide.cli", "--log-level", "WARNING", "dashboard", "--address", env["TASKTIDE_ADDRESS"]]
    proc = await asyncio.create_subprocess_exec(sys.executable, *argv, "--listen", f"127.0.0.1:{port}", env=env)
    console.print(f"[bold]demo[/]: dashboard on http://127.0.0.1:{port}/ (pid {proc.pid})")
    return proc


async def _run(console: Console, env: dict[str, str], address: str, app_target: str, count: int) -> None:
    """The worker, the tasks and their results (run_demo)."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tasktide.cli",
        "--log-level",
        "WARNING",
        "worker",
        app_target,
        "--concurrency",
        "8",
        env=env,
    )
    console.print(f"[bold]demo[/]: worker for {app_target} started (pid {worker.pid}); submitting {count} tasks")
    prefix = load_app(app_target).name  # task names are the app's name and the function's
    specs = []
    for i in range(count):
        if i % 4 == 0:
            specs.append(build_spec(f"{prefix}.flaky", [i]))
        elif i % 4 == 1:
            specs.append(build_spec(f"{prefix}.resize", [f"photo-{i}.jpg", 640], priority=10))
        else:
            specs.append(build_spec(f"{prefix}.add", [i, i]))
    specs.append(build_spec(f"{prefix}.fail", ["this one fails on purpose"]))
    try:
        async with AsyncClient(settings=ClientSettings.from_env(env, address=address)) as client:
            handles = await client.submit_many(specs)
            ids = [h.id for h in handles]
            outcome: dict[str, int] = {}
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                job = bar.add_task("results streaming in", total=len(ids))
                async for ev in client.watch(ids):
                    state = TaskState.from_proto(ev.state)
                    if ev.progress_only or not state.is_final:
                        if state is TaskState.RETRYING:
                            bar.console.print(f"  retrying {ev.name} {ev.task_id[:8]}: {ev.error.message}")
                        continue
                    outcome[state.name] = outcome.get(state.name, 0) + 1
                    bar.advance(job)
                    if state is not TaskState.SUCCEEDED:
                        bar.console.print(
                            f"  {state.name.lower()} {ev.name} {ev.task_id[:8]}: {ev.error.type}: {ev.error.message}"
                        )
            last = (await client.fetch([ids[1]]))[0]
            console.print(f"[bold]demo[/]: {json.dumps(outcome)}; e.g. {last.name} -> {last.result.json.decode()}")
            console.print(
                f"[bold]demo[/]: try `TASKTIDE_ADDRESS={address} tasktide submit {prefix}.add --args '[2, 3]' --wait`"
            )
        await worker.wait()
    finally:
        if worker.returncode is None:
            worker.terminate()
            await worker.wait()


__all__ = ["run_demo", "task_pb2"]
