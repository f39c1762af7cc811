"""Expired leases go back to their queue, or to the dead-letter set after max deliveries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import NoScriptError

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.loop import run_forever
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker import keys
from tasktide_services.worker.housekeeping import Housekeeping
from tasktide_services.worker.outcomes import hand_retries, report_to_workflows
from tasktide_services.worker.store import RegistryStore

log = logging.getLogger("tasktide.registry.reaper")

RETRY_HANDOVER_MS = 10_000  # next attempts parked longer than this were orphaned by a crash
PASS_CHUNK = 500  # queues looked at per round trip
REAP_LIMIT = 1000  # expired leases handled per queue and pass
MAX_SHARE = 0.2  # of its time the reaper's loop spends in passes, at most


async def reap_once(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
) -> int:
    """One pass over every queue, PASS_CHUNK queues per Redis round trip (the `reap` script and a
    look for stuck retries per queue): a pass over 10,000 queues is 20 round trips, not 20,000. A
    queue whose step fails is logged and the pass goes on with the others (what failed stays in
    Redis for the next pass); returns how many queues failed."""
    hooks = hooks or ServiceHooks()
    queues = await store.queues()
    failed = 0
    for start in range(0, len(queues), PASS_CHUNK):
        chunk = queues[start : start + PASS_CHUNK]
        try:
            replies = await _look(store, chunk, settings.max_deliveries)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - Redis away: the next pass tries again
            failed += len(chunk)
            log.warning("reaping %d queues failed", len(chunk), exc_info=True)
            continue
        for q, (reaped, stuck) in zip(chunk, replies, strict=True):
            try:
                await _after_reap(store, peers, settings, hooks, q, reaped, stuck)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - see above
                failed += 1
                log.warning("reaping queue %s failed", q, exc_info=True)
    return failed


async def _look(store: RegistryStore, queues: list[str], max_deliveries: int) -> list[tuple[Any, Any]]:
    """Per queue, the reply of `reap` and the ids of next attempts parked too long (either may be
    the exception Redis answered for that queue alone). Scripts Redis lost are loaded and their
    queues looked at again (NOSCRIPT: the script did not run)."""
    out: dict[str, tuple[Any, Any]] = {}
    todo = queues
    for attempt in (1, 2):
        now = now_ms()
        async with store.redis.pipeline(transaction=False) as pipe:
            for q in todo:
                k = keys.queue_keys(q)
                store.scripts["reap"](k, [q, keys.NOTIFY, now, max_deliveries, REAP_LIMIT], client=pipe)
                pipe.zrangebyscore(k.retry_at, "-inf", now - RETRY_HANDOVER_MS, start=0, num=1)
            replies = await pipe.execute(raise_on_error=False)
        lost = [q for i, q in enumerate(todo) if isinstance(replies[2 * i], NoScriptError)]
        for i, q in enumerate(todo):
            out[q] = (replies[2 * i], replies[2 * i + 1])
        if not lost or attempt == 2:
            break
        await store.redis.script_load(store.scripts["reap"].source)
        todo = lost
    return [out[q] for q in queues]


async def _after_reap(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks, q: str, reaped: Any, stuck: Any
) -> None:
    for reply in (reaped, stuck):
        if isinstance(reply, Exception):
            raise reply
    requeued, dead = int(reaped[0]), [r.decode() for r in reaped[1:]]
    if requeued:
        hooks.redelivered(q, requeued)
    if dead:
        await _record_dead(store, peers, q, dead, settings.max_deliveries, hooks)
    if stuck:  # the rare case: read them all
        parked = await store.stuck_retries(q, now_ms() - RETRY_HANDOVER_MS)
        if parked:
            await hand_retries(store, peers, parked)


async def run_reaper(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
) -> None:
    """Expired leases not handled this time stay in Redis until the next step. Housekeeping
    (housekeeping.py) runs from the same loop, every HOUSEKEEPING_SECONDS. A pass is linear in
    the number of queues; the loop spends at most MAX_SHARE of its time in passes (pause_after)."""

    housekeeping = Housekeeping(store, settings)
    interval = max(settings.tick_seconds, min(settings.lease_seconds / 10, 1.0))
    loop = asyncio.get_running_loop()

    async def step() -> int:
        started = loop.time()
        await reap_once(store, peers, settings, hooks)
        await housekeeping.maybe_run()
        await asyncio.sleep(pause_after(loop.time() - started, interval))
        return 0

    await run_forever("lease reaper", step, interval)


def pause_after(elapsed: float, interval: float) -> float:
    """What to wait beyond `interval` after a pass that took `elapsed` seconds, so that passes take
    at most MAX_SHARE of the time: with many queues, expired leases are found later (a pass over
    10,000 queues every few seconds instead of every second) rather than the reaper taking a core."""
    return max(0.0, elapsed * (1 / MAX_SHARE - 1) - interval)


async def _record_dead(
    store: RegistryStore,
    peers: Peers,
    queue: str,
    ids: list[str],
    max_deliveries: int,
    hooks: ServiceHooks | None = None,
) -> None:
    events = []
    tasks = []
    for tid in ids:
        task = await store.dead_task(queue, tid)
        if task is None:
            continue
        err = task_pb2.TaskError(
            type="tasktide.WorkerLost",
            message=f"the worker running this task was lost {max_deliveries} times; moved to the dead-letter set",
        )
        events.append(event(task, task_pb2.TASK_STATE_DEAD, error=err))
        tasks.append(task)
    if hooks is not None and tasks:
        hooks.dead_lettered(tasks, "worker_lost")
    await report_to_workflows(peers, events, tasks)
    if events:
        await peers.results.Record(results_pb2.RecordRequest(events=events))
