"""Scaling parts measured on the registry's own scripts, in this process, on the bench's Redis:
queued tasks (bytes per task, cost of a dispatch as the queue grows) and many queues (one reaper
pass). Queues are filled with the registry's enqueue script (the layout the platform writes),
1,000 tasks per call, so a million tasks takes seconds instead of a submission run."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from bench.procs import settle_used_memory
from bench.scaling_redis import empty, redis_use
from tasktide.v1 import task_pb2
from tasktide_services.common.lua import load_scripts, run_blocking_pipeline
from tasktide_services.common.peers import Peers
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler.admission import new_task
from tasktide_services.worker import keys
from tasktide_services.worker.housekeeping import Housekeeping
from tasktide_services.worker.reaper import reap_once
from tasktide_services.worker.store import SCRIPTS, RegistryStore, build_enqueue

FILL_CALL = 1000  # tasks per enqueue call while filling
DISPATCH = 32  # tasks per dispatch call: a worker's usual credit window
LEASE_MS = 30_000
DISPATCHED = 960  # tasks dispatched per size: the same count whatever waits


def noop_spec(queue: str) -> task_pb2.TaskSpec:
    """What `bench.tt_tasks.noop.delay()` sends: a name, a queue, empty JSON arguments."""
    return task_pb2.TaskSpec(
        name="bench.noop",
        queue=queue,
        args=task_pb2.Payload(json=b"[]"),
        kwargs=task_pb2.Payload(json=b"{}"),
    )


def fill(r: redis.Redis, queues: list[str], per_queue: int, log: Callable[[str], None]) -> None:
    scripts = load_scripts(None, SCRIPTS)
    pending: list[task_pb2.Task] = []
    now = int(time.time() * 1000)
    total, t0 = len(queues) * per_queue, time.monotonic()
    done = 0

    def flush() -> None:
        nonlocal done
        batch = list(pending)
        pending.clear()
        run_blocking_pipeline(r, lambda pipe: build_enqueue(pipe, scripts, batch), scripts)
        done += len(batch)
        if done % 200_000 < len(batch):
            log(f"  filled {done:,} of {total:,} ({time.monotonic() - t0:.0f} s)")

    for q in queues:
        for _ in range(per_queue):
            pending.append(new_task(noop_spec(q), now))
            if len(pending) >= FILL_CALL:
                flush()
    if pending:
        flush()


def _dispatch_cost(r: redis.Redis, scripts: dict[str, Any], k: keys.QueueKeys) -> dict[str, float]:
    """DISPATCHED tasks leased, DISPATCH per call: Redis CPU and commands per task, and the rate."""
    calls = DISPATCHED // DISPATCH
    r.config_resetstat()
    use0 = redis_use(r)
    t0 = time.perf_counter()
    for _ in range(calls):
        run_blocking_pipeline(
            r,
            lambda pipe: scripts["dispatch"](k, [int(time.time() * 1000), LEASE_MS, DISPATCH], client=pipe),
            scripts,
        )
    wall = time.perf_counter() - t0
    used = redis_use(r) - use0
    dispatched = calls * DISPATCH
    return {
        "redis_cpu_us_per_task": used.cpu * 1e6 / dispatched,
        "commands_per_task": used.calls / dispatched,
        "dispatch_wall_tasks_per_s": dispatched / wall,
    }


def queued(r: redis.Redis, sizes: list[int], log: Callable[[str], None]) -> list[dict[str, float]]:
    """Per size: Redis bytes per queued task, and what dispatching costs Redis with that many waiting
    (the least of up to 3 readings of DISPATCHED tasks each)."""
    out = []
    scripts = load_scripts(None, SCRIPTS)
    for n in sizes:
        empty(r)
        before = settle_used_memory(r)
        log(f"queued: {n:,} tasks")
        fill(r, ["fill"], n, log)
        after = settle_used_memory(r)
        k = keys.queue_keys("fill")
        time.sleep(2.0)  # Redis finishes rehashing what the fill grew (its cron) before the readings
        readings = [_dispatch_cost(r, scripts, k) for _ in range(min(3, n // DISPATCHED))]
        best = min(readings, key=lambda x: x["redis_cpu_us_per_task"])  # the least disturbed
        out.append({"queued": n, "bytes_per_task": (after - before) / n, **best})
    r.flushdb(asynchronous=True)
    return out


def many_queues(url: str, counts: list[int], log: Callable[[str], None]) -> list[dict[str, float]]:
    """Per number of queues (one ready task each): one reaper pass and one housekeeping pass, as
    the registry runs them (reaper.reap_once, Housekeeping.run_once), timed here and counted in Redis."""
    return asyncio.run(_many_queues(url, counts, log))


async def _many_queues(url: str, counts: list[int], log: Callable[[str], None]) -> list[dict[str, float]]:
    r = redis.Redis.from_url(url)
    aredis = await connect(url)
    settings = ServerSettings()
    store = RegistryStore(aredis)
    peers = Peers(settings)
    out = []
    try:
        for n in counts:
            empty(r)
            log(f"queues: {n:,}")
            fill(r, [f"q{i}" for i in range(n)], 1, log)
            await reap_once(store, peers, settings)  # scripts loaded
            r.config_resetstat()
            use0 = redis_use(r)
            walls = []
            cpu0 = time.process_time()
            for _ in range(3):
                t0 = time.perf_counter()
                await reap_once(store, peers, settings)
                walls.append(time.perf_counter() - t0)
            cpu = (time.process_time() - cpu0) / 3
            used = redis_use(r) - use0
            house = Housekeeping(store, settings)
            t0, cpu0 = time.perf_counter(), time.process_time()
            await house.run_once()
            house_wall, house_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            out.append(
                {
                    "queues": n,
                    "reap_pass_s": statistics.median(walls),
                    "reap_cpu_s": cpu,
                    "reap_redis_cpu_s": used.cpu / 3,
                    "reap_commands": used.calls / 3,
                    "housekeeping_pass_s": house_wall,
                    "housekeeping_cpu_s": house_cpu,
                }
            )
    finally:
        await peers.close()
        await aredis.aclose()
        r.flushdb(asynchronous=True)
        r.close()
    return out
