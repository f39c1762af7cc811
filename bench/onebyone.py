"""One-by-one `add.delay(i, i)` through the scheduler, confirmed, against Celery's one-by-one
`delay()`, alternated round by round; CPU time per task of every process from /proc.

    python -m bench.onebyone [--n 3000] [--rounds 2] [--only tasktide] [--no-workers] [--floor]

Each row: tasks/s (wall time, noisy on a shared machine) and the CPU microseconds per task of the
server (or nothing for Celery), the workers, Redis and the producer (this process). With
`--no-workers` the tasks are only queued: the submission path alone. `--floor` instead measures
what the transport alone costs: the client's own StreamSubmitter against a bare grpc.aio
SubmitStream that answers each submission at once ("grpc"), or after one two-command Redis
pipeline over the services' link ("grpc + redis"); no admission, no scheduler. Its "redis"
column is Redis's CPU per submission: one round trip's, with a gRPC client and server busy beside
it. Where `go` is on PATH, the same two against a SubmitStream in Go ("go grpc", "go grpc + redis":
grpc-go and go-redis, bench/polyglot/go floor.go): what a compiled server would save per message. Its first
row, "redis", is one round trip to Redis alone: a PING over the services' link from this process,
awaited before the next (its "server" column is Redis's CPU): what each round trip costs on this
machine, whatever sends it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procs import bench_redis, cpu_seconds, descendants


def _own_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _tree(pid: int) -> float:
    return sum(cpu_seconds(p) for p in (pid, *descendants(pid)))


def _switches(pid: int) -> int:
    """Voluntary context switches of every thread of pid and its descendants: how often they slept
    and were woken (less sensitive to the machine's load than CPU time, though not immune)."""
    total = 0
    for p in (pid, *descendants(pid)):
        for status in Path(f"/proc/{p}/task").glob("*/status"):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total


def _round(system: Any, redis_pid: int, n: int) -> dict[str, float]:
    parts: dict[str, list[int]] = {"redis": [redis_pid]}
    if getattr(system, "server", None) is not None:
        parts["server"] = [system.server.pid]
    workers = [w.pid for w in getattr(system, "workers", [])] or (
        [system.worker.pid] if getattr(system, "worker", None) is not None else []
    )
    parts["workers"] = workers
    parts["producer"] = [os.getpid()]
    before = {k: sum(_tree(p) for p in pids) for k, pids in parts.items()}
    woken = {k: sum(_switches(p) for p in pids) for k, pids in parts.items()}
    own0 = _own_cpu()
    add = system.add if hasattr(system, "add") else system.tasks.add
    t0 = time.perf_counter()
    handles = [add.delay(i, i) for i in range(n)]
    elapsed = time.perf_counter() - t0
    own = _own_cpu() - own0
    after = {k: sum(_tree(p) for p in pids) for k, pids in parts.items()}
    out = {"rate": n / elapsed}
    for k in parts:
        out[k] = (after[k] - before[k]) / n * 1e6
        out[f"{k} wakeups"] = (sum(_switches(p) for p in parts[k]) - woken[k]) / n
    out["producer"] = own / n * 1e6
    out["total"] = sum(out[k] for k in parts)
    if parts["workers"]:  # drained, so the next round starts idle
        for h in handles[-50:]:
            h.get(timeout=60)
        time.sleep(0.5)
    return out


def _floor_server(port: int, redis_url: str) -> None:
    """A SubmitStream that answers at once, or after one Redis round trip when `redis_url` is set."""
    import grpc
    import uvloop

    from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc
    from tasktide_services.common.redis_link import LinkedRedis

    answer = scheduler_pb2.SubmitResponse(task_id="0" * 32)

    class Floor(scheduler_pb2_grpc.SchedulerServicer):
        def __init__(self) -> None:
            self.redis = LinkedRedis.from_url(redis_url) if redis_url else None

        async def SubmitStream(self, requests: Any, ctx: Any) -> Any:  # noqa: N802 - gRPC's name
            async for req in requests:
                if self.redis is not None:
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.set("floor", "1")
                    pipe.sadd("floor:set", "1")
                    await pipe.execute()
                yield scheduler_pb2.SubmitStreamResponse(seq=req.seq, result=answer)

    async def serve() -> None:
        server = grpc.aio.server()
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(Floor(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(serve())


def _floor_servers(redis_url: str, work: Path) -> list[tuple[str, Callable[[int], Any]]]:
    """(label, start(port) -> a process with .pid and .terminate()) for each floor server: Python's
    (grpc.aio), then Go's (bench/polyglot/go floor.go: grpc-go, go-redis) where go builds it."""
    import multiprocessing
    import subprocess

    def python(url: str) -> Callable[[int], Any]:
        def start(port: int) -> Any:
            ctx = multiprocessing.get_context("spawn")
            proc = ctx.Process(target=_floor_server, args=(port, url), daemon=True)
            proc.start()
            return proc

        return start

    servers = [("grpc", python("")), ("grpc + redis", python(redis_url))]
    try:
        from bench.polyglot.__main__ import _build_go

        program = _build_go(work)
    except (SystemExit, subprocess.SubprocessError, OSError) as exc:
        print(f"Go floor skipped: {str(exc)[:120]}", flush=True)
        return servers

    def go(url: str) -> Callable[[int], Any]:
        return lambda port: subprocess.Popen([str(program), "-floor-port", str(port), "-floor-redis", url])

    return [*servers, ("go grpc", go("")), ("go grpc + redis", go(redis_url))]


def _redis_round_trips(redis_url: str, redis_pid: int, n: int) -> tuple[float, float, float]:
    """n PINGs over the services' link, each awaited: (round trips/s, Redis CPU us and this
    process's CPU us per round trip)."""

    import uvloop

    from tasktide_services.common.redis_conn import connect

    async def run() -> tuple[float, float, float]:
        r = await connect(redis_url)
        try:

            async def ping() -> None:
                async with r.pipeline(transaction=False) as p:
                    p.ping()
                    await p.execute()

            for _ in range(200):
                await ping()
            redis0, own0, t0 = cpu_seconds(redis_pid), _own_cpu(), time.perf_counter()
            for _ in range(n):
                await ping()
            elapsed = time.perf_counter() - t0
            return n / elapsed, (cpu_seconds(redis_pid) - redis0) / n * 1e6, (_own_cpu() - own0) / n * 1e6
        finally:
            await r.aclose()

    return uvloop.run(run())


def _floor(redis_url: str, redis_pid: int, n: int, rounds: int, work: Path) -> None:
    import grpc

    from tasktide._submitter import StreamSubmitter
    from tasktide.v1 import scheduler_pb2_grpc, task_pb2
    from tasktide_services.common.redis_server import free_port

    spec = task_pb2.TaskSpec(name="bench.add", queue="default")
    print(f"{'floor':16} {'tasks/s':>8} {'server':>7} {'client':>7} {'redis':>7}")
    for _ in range(rounds):
        rate, redis_us, own_us = _redis_round_trips(redis_url, redis_pid, n)
        print(f"{'redis':16} {rate:8,.0f} {redis_us:7,.0f} {own_us:7,.0f} {redis_us:7,.0f}", flush=True)
    for label, start in _floor_servers(redis_url, work):
        port = free_port()
        proc = start(port)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=30)
            submitter = StreamSubmitter(scheduler_pb2_grpc.SchedulerStub(channel), "floor")
            for _ in range(200):
                submitter.submit(spec)
            for _ in range(rounds):
                server0, own0, t0 = _tree(proc.pid or 0), _own_cpu(), time.perf_counter()
                redis0 = cpu_seconds(redis_pid)
                for _ in range(n):
                    submitter.submit(spec)
                elapsed = time.perf_counter() - t0
                server_us = (_tree(proc.pid or 0) - server0) / n * 1e6
                redis_us = (cpu_seconds(redis_pid) - redis0) / n * 1e6
                print(
                    f"{label:16} {n / elapsed:8,.0f} {server_us:7,.0f} {(_own_cpu() - own0) / n * 1e6:7,.0f}"
                    f" {redis_us:7,.0f}",
                    flush=True,
                )
            submitter.close()
            channel.close()
        finally:
            proc.terminate()
            if hasattr(proc, "join"):  # multiprocessing's
                proc.join(10)
            else:
                proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.onebyone", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", choices=["tasktide", "celery"])
    p.add_argument("--no-workers", action="store_true")
    p.add_argument("--floor", action="store_true", help="the transport alone (module doc)")
    args = p.parse_args(argv)
    from bench.databases import CELERY_DB, TASKTIDE_DB

    with contextlib.ExitStack() as stack:
        work, server, base = bench_redis(stack, prefix="tasktide-onebyone-")
        if args.floor:
            _floor(f"{base}/{TASKTIDE_DB}", server.process.pid, args.n, args.rounds, work)
            return 0
        systems: list[Any] = []
        for name in ("tasktide", "celery"):
            if args.only and args.only != name:
                continue
            system: Any
            if name == "tasktide":
                from bench.tasktide_system import TasktideSystem

                system = TasktideSystem(f"{base}/{TASKTIDE_DB}", work)
            else:
                from bench.celery_system import CelerySystem

                system = CelerySystem(f"{base}/{CELERY_DB}", work)
            system.start()
            stack.callback(system.stop)
            if not args.no_workers:
                system.start_workers()
            systems.append(system)
        for system in systems:  # warm-up
            _round(system, server.process.pid, 200)
        print("CPU us per task by process; in brackets, the times its threads slept and were woken, per task")
        print(
            f"{'system':10} {'tasks/s':>8} {'server':>13} {'workers':>13} {'redis':>13} {'producer':>13} {'total':>6}"
        )
        for _ in range(args.rounds):
            for system in systems:
                r = _round(system, server.process.pid, args.n)
                cells = [
                    f"{r.get(k, 0):6,.0f} [{r.get(f'{k} wakeups', 0):4.1f}]"
                    for k in ("server", "workers", "redis", "producer")
                ]
                print(f"{system.name:10} {r['rate']:8,.0f} {' '.join(cells)} {r['total']:6,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
