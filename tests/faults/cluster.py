"""The platform as in production, for the fault suite: a Redis of its own, the three services each
its own process on a unix socket (any one can be killed and started again), and worker processes."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from tasktide_services.testing import spawn
from tests.processes import ROOT, SERVICES, stop, wait_serving

# Short leases and ticks so redelivery and recovery happen within a case's time; enough deliveries
# that a task whose worker was killed a few times is redelivered, not dead-lettered.
FAST = {
    "TASKTIDE_LEASE_SECONDS": "3",
    "TASKTIDE_TICK_SECONDS": "0.05",
    "TASKTIDE_MAX_DELIVERIES": "20",
    "TASKTIDE_LOG_LEVEL": "WARNING",
}


class Cluster:
    """The three services as separate processes, on unix sockets in a folder of their own."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.folder = tempfile.mkdtemp(prefix="tt-")  # short: a socket path has a length limit
        self.addresses = {name: f"unix:{self.folder}/{name}.sock" for name in SERVICES}
        self.logs = logs
        self.env = {
            **FAST,
            **env,
            "TASKTIDE_SCHEDULER_ADDRESS": self.addresses["scheduler"],
            "TASKTIDE_REGISTRY_ADDRESS": self.addresses["registry"],
            "TASKTIDE_RESULTS_ADDRESS": self.addresses["results"],
            "TASKTIDE_ADDRESS": self.addresses["scheduler"],
        }
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("a")
        proc = spawn(name, env={**self.env, "TASKTIDE_LISTEN": self.addresses[name]}, cwd=ROOT, stdout=log, stderr=log)
        self.procs[name] = proc
        wait_serving(self.addresses[name], proc)

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no goodbye, as a crash or an OOM kill would."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        Path(self.addresses[name].removeprefix("unix:")).unlink(missing_ok=True)

    def close(self) -> None:
        stop(list(self.procs.values()))
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def cluster(env: dict[str, str], logs: Path) -> Iterator[Cluster]:
    c = Cluster(env, logs)
    try:
        for name in SERVICES:
            c.start(name)
        yield c
    finally:
        c.close()


class Workers:
    """Worker processes of tests/tasks_app.py consuming `queue` (comma-separated: several)."""

    def __init__(self, env: dict[str, str], queue: str, logs: Path, concurrency: int = 4) -> None:
        self.env, self.queue, self.logs, self.concurrency = env, queue, logs, concurrency
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(
        self, n: int = 1, env: dict[str, str] | None = None, options: Sequence[str] = ()
    ) -> list[subprocess.Popen[str]]:
        """`options`: more of `tasktide worker`'s, after the defaults (a later one wins)."""
        new = []
        for _ in range(n):
            log = (self.logs / "workers.log").open("a")
            new.append(
                spawn(
                    "worker",
                    "tests.tasks_app:app",
                    "--queues",
                    self.queue,
                    "--concurrency",
                    str(self.concurrency),
                    *options,
                    env={**self.env, **(env or {})},
                    cwd=ROOT,
                    stdout=log,
                    stderr=log,
                )
            )
        self.procs.extend(new)
        return new

    def kill(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.procs.remove(proc)

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
        stop(self.procs)


@contextlib.contextmanager
def workers(env: dict[str, str], queue: str, logs: Path, n: int, concurrency: int = 4) -> Iterator[Workers]:
    w = Workers(env, queue, logs, concurrency)
    try:
        w.spawn(n)
        yield w
    finally:
        w.close()
