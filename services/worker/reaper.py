"""Expired leases go back to their queue, or to the dead-letter set after max deliveries."""

from __future__ import annotations

import asyncio
import logging

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.loop import run_forever
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker.housekeeping import Housekeeping
from tasktide_services.worker.outcomes import hand_retries, report_to_workflows
from tasktide_services.worker.store import RegistryStore

log = logging.getLogger("tasktide.registry.reaper")

RETRY_HANDOVER_MS = 10_000  # next attempts parked longer than this were orphaned by a crash


async def reap_once(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
) -> int:
    """One pass over every queue. A queue whose step fails is logged and the pass goes on with the
    others (what failed stays in Redis for the next pass); returns how many queues failed."""
    hooks = hooks or ServiceHooks()
    failed = 0
    for q in await store.queues():
        try:
            await _reap_queue(store, peers, settings, hooks, q)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - see above
            failed += 1
            log.warning("reaping queue %s failed", q, exc_info=True)
    return failed


async def _reap_queue(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks, q: str
) -> None:
    requeued, dead = await store.reap(q, now_ms(), settings.max_deliveries)
    if requeued:
        hooks.redelivered(q, requeued)
    if dead:
        await _record_dead(store, peers, q, dead, settings.max_deliveries, hooks)
    stuck = await store.stuck_retries(q, now_ms() - RETRY_HANDOVER_MS)
    if stuck:
        await hand_retries(store, peers, stuck)


async def run_reaper(
    store: RegistryStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
) -> None:
    """Expired leases not handled this time stay in Redis until the next step. Housekeeping
    (housekeeping.py) runs from the same loop, every HOUSEKEEPING_SECONDS."""

    housekeeping = Housekeeping(store, settings)

    async def step() -> int:
        await reap_once(store, peers, settings, hooks)
        await housekeeping.maybe_run()
        return 0

    await run_forever("lease reaper", step, max(settings.tick_seconds, min(settings.lease_seconds / 10, 1.0)))


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
