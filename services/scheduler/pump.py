"""Moves tasks whose time has come from the delayed set to the registry's ready queues."""

from __future__ import annotations

import logging

from tasktide.v1 import task_pb2
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.loop import run_forever
from tasktide_services.scheduler.service import SchedulerService
from tasktide_services.scheduler.store import SchedulerStore

log = logging.getLogger("tasktide.scheduler.pump")

HANDOVER_MS = 30_000
BATCH = 500


async def pump_once(store: SchedulerStore, service: SchedulerService) -> int:
    ids = await store.claim_due(now_ms(), HANDOVER_MS, BATCH)
    if not ids:
        return 0
    tasks = [t for t in await store.load(ids) if t is not None]
    for t in tasks:
        t.state = task_pb2.TASK_STATE_QUEUED
    with service.hooks.scheduling(tasks, "due"):
        await service.hand_over(tasks, [event(t, task_pb2.TASK_STATE_QUEUED) for t in tasks])
    await store.handed_over(ids)
    return len(ids)


async def run_pump(store: SchedulerStore, service: SchedulerService, tick: float) -> None:
    """Due tasks that fail to move stay in :moving and return after their hand-over deadline."""
    await run_forever("delayed pump", lambda: pump_once(store, service), tick, BATCH)
