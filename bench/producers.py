"""Producers as a web application has them, and latency while the platform is busy.

- **producers_threads**: 8 threads of one process, each calling `add.delay(i, i)` one by one.
- **producers_processes**: 4 processes, each calling `add.delay(i, i)` one by one.
  Both are timed from the moment every producer is ready (a barrier) until the last call returns,
  then every result is collected (untimed) so the next workload starts idle.
- **latency_under_load**: `add.delay(i, i).get()` round trips (p50, p99) while another process
  submits no-op tasks at half the system's measured bulk capacity (its `throughput` figure), in
  small batches every LOAD_TICK seconds (bench/procs.py). The load's actual rate is reported beside the
  percentiles, and a backlog left when the round trips end is logged, so a load the system did not
  keep up with is visible.

`python -m bench.producers` runs these rows alone, for both systems side by side on one Redis,
alternating them round by round (`--rounds`), and prints each round's figures and their ranges.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import bench_redis, paced, tree_cpu_seconds

THREADS = 8
PROCESSES = 4
LOAD_SHARE = 0.5  # of the measured bulk capacity
LOAD_WARMUP = 1.0  # seconds of load before the first measured round trip


@dataclass(frozen=True)
class ProducerCounts:
    tasks: int = 5_000  # per many-producers run, spread over the producers
    round_trips: int = 500

    def scaled(self, factor: float) -> ProducerCounts:
        return ProducerCounts(
            max(PROCESSES * THREADS, round(self.tasks * factor)), max(20, round(self.round_trips * factor))
        )


def _system_tasks(name: str) -> Any:
    """The benchmark's task module of a system, imported in this process (the address or broker
    URL comes from the environment its system set before starting this process)."""
    if name == "tasktide":
        from bench import tt_tasks

        return tt_tasks
    from bench import celery_tasks

    return celery_tasks


def _task_id(handle: Any) -> str:
    return str(handle.id)


# -- many producers ---------------------------------------------------------------------------


def _produce(add: Any, start: int, count: int) -> list[str]:
    return [_task_id(add.delay(i, i)) for i in range(start, start + count)]


def _shares(n: int, k: int) -> list[tuple[int, int]]:
    """(first i, count) of each of k producers, n calls in all."""
    base, extra = divmod(n, k)
    out, start = [], 0
    for j in range(k):
        count = base + (1 if j < extra else 0)
        out.append((start, count))
        start += count
    return out


def threads_rate(add: Any, n: int, threads: int = THREADS) -> tuple[dict[str, float], list[str]]:
    """n `delay()` calls over `threads` threads of this process; the rate and the ids."""
    barrier = threading.Barrier(threads + 1)
    ids: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(j: int, start: int, count: int) -> None:
        barrier.wait()
        try:
            ids[j] = _produce(add, start, count)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(j, s, c)) for j, (s, c) in enumerate(_shares(n, threads))]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {"rate": n / elapsed, "seconds": elapsed}, [i for part in ids for i in part]


def _process_main(name: str, start: int, count: int, ready: Any, go: Any, out: Any) -> None:
    add = _system_tasks(name).add
    add.delay(start, start).get(timeout=30)  # connected and warm before the clock starts
    ready.wait()
    go.wait()
    t0, cpu0 = time.time(), _own_cpu()
    ids = _produce(add, start, count)
    out.put((t0, time.time(), _own_cpu() - cpu0, ids))


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def processes_rate(name: str, n: int, processes: int = PROCESSES) -> tuple[dict[str, float], list[str]]:
    """n `delay()` calls over `processes` processes; timed from the common start to the last
    producer's end (wall clock of this machine). `producer_cpu`: the CPU seconds the producers
    spent in their loops (their start-up left out)."""
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Barrier(processes + 1), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_process_main, args=(name, s, c, ready, go, out), daemon=True)
        for s, c in _shares(n, processes)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=120)
        go.set()
        parts = [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise RuntimeError(f"{name}: a producer process exited with {bad[0]}")
    elapsed = max(end for _, end, _, _ in parts) - min(t0 for t0, _, _, _ in parts)
    figures = {"rate": n / elapsed, "seconds": elapsed, "producer_cpu": sum(cpu for _, _, cpu, _ in parts)}
    return figures, [i for _, _, _, ids in parts for i in ids]


# -- latency under load -----------------------------------------------------------------------


def _load_main(name: str, rate: float, running: Any, stop: Any, out: Any) -> None:
    """Submit no-op tasks at `rate` per second, a batch every LOAD_TICK, until `stop` is set;
    `running` is set once the first batch is in."""
    tasks = _system_tasks(name)
    submit = _bulk_submitter(name, tasks)
    submit(1)  # connected before the clock starts
    running.set()
    out.put(paced(rate, submit, stop.is_set))


def _bulk_submitter(name: str, tasks: Any) -> Callable[[int], None]:
    if name == "tasktide":
        client, noop = tasks.app.client, tasks.noop

        def tasktide_submit(k: int) -> None:
            client.submit_many([noop.spec() for _ in range(k)])

        return tasktide_submit
    from celery import group

    def celery_submit(k: int) -> None:
        group(tasks.noop.s() for _ in range(k)).apply_async()

    return celery_submit


def latency_under_load(name: str, add: Any, capacity: float, n: int, backlog: Callable[[], int]) -> dict[str, float]:
    """Round trips of `add` while a separate process loads the system at LOAD_SHARE of
    `capacity` (tasks/s)."""
    from bench.round_trips import percentiles, timed_round_trips

    ctx = mp.get_context("spawn")
    running, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    rate = capacity * LOAD_SHARE
    proc = ctx.Process(target=_load_main, args=(name, rate, running, stop, out), daemon=True)
    proc.start()
    try:
        if not running.wait(120):
            raise RuntimeError(f"{name}: the load process did not start (exit code {proc.exitcode})")
        time.sleep(LOAD_WARMUP)
        samples = timed_round_trips(add, n, name, timeout=60)
        left = backlog()
    finally:
        stop.set()
        sent, seconds = out.get(timeout=60)
        proc.join(timeout=30)
    if left:
        print(f"{name}: {left} load tasks still queued after the round trips", file=sys.stderr, flush=True)
    return {**percentiles(samples), "load_rate": sent / seconds, "target_rate": rate}


# -- each system's side -----------------------------------------------------------------------


def _collect(system: Any, ids: list[str]) -> None:
    if system.name == "tasktide":
        system._collect(ids)
        return
    from celery.result import AsyncResult, ResultSet

    system._collect(ResultSet([AsyncResult(i, app=system.tasks.app) for i in ids]))


def _add(system: Any) -> Any:
    return system.add if system.name == "tasktide" else system.tasks.add


def _backlog(system: Any) -> Callable[[], int]:
    """Tasks queued and not yet taken by a worker."""
    if system.name == "tasktide":
        return lambda: sum(int(system.redis.zcard(k)) for k in system.redis.scan_iter(match="tt:w:*:ready"))
    return lambda: int(system.redis.llen("celery"))


def cpu_meter(system: Any, redis_pid: int) -> Callable[[], float]:
    """CPU seconds so far of the system's processes, Redis and this process."""
    pids = [*system.pids(), *([redis_pid] if redis_pid else [])]
    return lambda: tree_cpu_seconds(pids)


def many_producers(system: Any, kind: str, n: int, cpu: Callable[[], float]) -> dict[str, float]:
    """`kind` "threads" or "processes": the rate of the producers, and the CPU time per task of
    every process (the collection of the results included, as in the cpu_one_by_one row; the
    producer processes' start-up left out)."""
    before = cpu()
    if kind == "threads":
        figures, ids = threads_rate(_add(system), n)
    else:
        figures, ids = processes_rate(system.name, n)
    _collect(system, ids)
    spent = cpu() - before + figures.pop("producer_cpu", 0.0)
    return {**figures, "cpu": spent / n * 1e6}


def producer_rows(
    system: Any, counts: ProducerCounts, capacity: float, log: Callable[[str], None], redis_pid: int = 0
) -> dict[str, dict[str, float]]:
    """The three rows for one started system with its workers running."""
    out: dict[str, dict[str, float]] = {}
    cpu = cpu_meter(system, redis_pid)
    log(f"[{system.name}] {THREADS} producer threads, n={counts.tasks}")
    out["producers_threads"] = many_producers(system, "threads", counts.tasks, cpu)
    log(f"[{system.name}] {PROCESSES} producer processes, n={counts.tasks}")
    out["producers_processes"] = many_producers(system, "processes", counts.tasks, cpu)
    log(f"[{system.name}] round trips at {LOAD_SHARE:.0%} of {capacity:,.0f} tasks/s, n={counts.round_trips}")
    out["latency_under_load"] = latency_under_load(
        system.name, _add(system), capacity, counts.round_trips, _backlog(system)
    )
    return out


# -- python -m bench.producers ----------------------------------------------------------------


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _span(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.1f} ({min(xs):,.1f}-{max(xs):,.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.producers", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=2, help="alternated rounds of each system")
    p.add_argument("--only", choices=["tasktide", "celery"])
    p.add_argument("--rows", default="single,threads,processes,latency", help="comma-separated subset")
    p.add_argument("--work-dir", type=Path)
    args = p.parse_args(argv)
    counts = ProducerCounts().scaled(args.scale)
    rows = set(args.rows.split(","))
    from bench.databases import CELERY_DB, TASKTIDE_DB

    with contextlib.ExitStack() as stack:
        work, server, base = bench_redis(stack, args.work_dir)
        systems = []
        for name in ("tasktide", "celery"):
            if args.only and args.only != name:
                continue
            if name == "tasktide":
                from bench.tasktide_system import TasktideSystem

                system: Any = TasktideSystem(f"{base}/{TASKTIDE_DB}", work)
            else:
                from bench.celery_system import CelerySystem

                system = CelerySystem(f"{base}/{CELERY_DB}", work)
            system.start()
            stack.callback(system.stop)
            system.start_workers()
            systems.append(system)
        figures: dict[str, dict[str, list[float]]] = {s.name: {} for s in systems}
        capacity = {}
        if "latency" in rows:
            for s in systems:
                _log(f"[{s.name}] bulk capacity, n={counts.tasks * 2}")
                capacity[s.name] = s.throughput(counts.tasks * 2)["rate"]
        for r in range(args.rounds):
            for s in systems:
                got: dict[str, float] = {}
                if "single" in rows:
                    meter = cpu_meter(s, server.process.pid)
                    before = meter()
                    got["single rate"] = s.submit_rate(counts.tasks)["rate"]
                    got["single cpu us"] = (meter() - before) / counts.tasks * 1e6
                for kind in ("threads", "processes"):
                    if kind in rows:
                        row = many_producers(s, kind, counts.tasks, cpu_meter(s, server.process.pid))
                        got[f"{kind} rate"], got[f"{kind} cpu us"] = row["rate"], row["cpu"]
                if "latency" in rows:
                    lat = latency_under_load(s.name, _add(s), capacity[s.name], counts.round_trips, _backlog(s))
                    got.update({f"loaded {k}": v for k, v in lat.items()})
                _log(f"[{s.name}] round {r + 1}: " + ", ".join(f"{k} {v:,.2f}" for k, v in got.items()))
                for k, v in got.items():
                    figures[s.name].setdefault(k, []).append(v)
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores, capacity {capacity}")
    for name, fig in figures.items():
        for k, xs in fig.items():
            print(f"{name:9} {k:22} {_span(xs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
