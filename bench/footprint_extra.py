"""The footprint rows of tasktide's other kinds of task (bench/footprint.py): a task with a
countdown, a task retried once after a backoff, the occurrences of a schedule, a two-step chain.
Each is counted per task (per workflow, per occurrence) with the same counters, the platform's
idle polling during the run included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from bench.footprint import TIMELINES, measured
from bench.procs import settle_used_memory, wait_until

COUNTDOWN = 0.5  # seconds a delayed task waits
EVERY = 0.2  # seconds between a schedule's occurrences
WAITING_TIMES = 5  # the waiting rows count this many times more tasks than the others


def waiting(
    r: redis.Redis, client: Any, n: int, submit: Callable[[int], Any], retried: bool = False
) -> dict[str, float]:
    """Bytes per task while n tasks wait (a long countdown, or a long backoff after a first
    attempt); then they are cancelled."""
    from tasktide.v1 import task_pb2

    before = settle_used_memory(r)
    handles = [submit(i) for i in range(n)]
    if retried:  # the first attempts have run: every task waits for its second

        def all_waiting() -> bool:
            return all(res.state == task_pb2.TASK_STATE_RETRYING for res in client.fetch([h.id for h in handles]))

        wait_until(all_waiting, 120, "the first attempts to fail")
    kept = (settle_used_memory(r) - before) / n
    for h in handles:
        client.cancel(h.id)
    return {"bytes": kept}


def _schedule_bytes(r: redis.Redis, name: str) -> float:
    """MEMORY USAGE of a schedule's hash, plus its members in the sets of every schedule."""
    (key,) = [k for k in r.scan_iter(f"tt:s:{{sched}}:def:*{name}", count=1000)]
    member = 2 * (len(name) + 24)  # its id in :all and :due (with a score), about
    return float(r.memory_usage(key, samples=0) or 0) + member


def extra_rows(system: Any, url: str, n: int, log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    import tasktide

    r = redis.Redis.from_url(url)
    tasks, client = system.tasks, system.client
    out: dict[str, dict[str, float]] = {}

    def delayed() -> None:
        handles = [tasks.add.apply_async(args=(i, i), countdown=COUNTDOWN) for i in range(n)]
        system._collect([h.id for h in handles])

    def retried() -> None:
        handles = [tasks.flaky.delay(i) for i in range(n)]
        system._collect([h.id for h in handles])

    def chains() -> None:
        flows = [tasktide.chain(tasks.add.s(i, i), tasks.add.s(1)).apply_async(client) for i in range(n)]
        for f in flows:
            f.get(timeout=60)

    for kind, run in (("delayed task", delayed), ("retried task", retried), ("two-step chain", chains)):
        log(f"[{system.name}] footprint, {kind}, n={n}")
        out[kind] = measured(r, n, run, TIMELINES["tasktide"])

    waiting_n = n * WAITING_TIMES  # more tasks: used_memory deltas of a few tasks are noisy
    log(f"[{system.name}] footprint, bytes of waiting tasks, n={waiting_n}")
    out["delayed task, waiting"] = waiting(
        r, client, waiting_n, lambda i: tasks.add.apply_async(args=(i, i), countdown=3600)
    )
    out["retried task, waiting its backoff"] = waiting(
        r, client, waiting_n, lambda i: tasks.flaky.delay(i, 3600.0), True
    )

    name = f"footprint-{uuid.uuid4().hex[:8]}"
    client.put_schedule(name, tasks.noop.name, every=3600)
    out["schedule, kept while it exists"] = {"bytes": _schedule_bytes(r, name)}
    client.delete_schedule(name)

    def occurrences() -> None:
        client.put_schedule(name, tasks.noop.name, every=EVERY)
        try:
            wait_until(lambda: client.get_schedule(name).runs >= n, n * EVERY * 5 + 30, "the schedule's occurrences")
        finally:
            client.delete_schedule(name)
        time.sleep(1.0)  # the last occurrence's task finishes

    log(f"[{system.name}] footprint, schedule occurrences, n={n}")
    out["schedule occurrence"] = measured(r, n, occurrences, TIMELINES["tasktide"])
    return out
