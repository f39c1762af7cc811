"""Moves tasks whose time has come from the delayed set to the registry's ready queues."""

from __future__ import annotations

import logging

from tasktide_services.common.events import now_ms
from tasktide_services.common.loop import run_forever
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.store import SchedulerStore

log = logging.getLogger("tasktide.scheduler.pump")

HANDOVER_MS = 30_000
BATCH = 500


async def pump_once(store: SchedulerStore, admission: Admission) -> int:
    ids = await store.claim_due(now_ms(), HANDOVER_MS, BATCH)
    if not ids:
        return 0
    await admission.due([t for t in await store.load(ids) if t is not None])
    await store.handed_over(ids)
    return len(ids)


async def run_pump(store: SchedulerStore, admission: Admission, tick: float) -> None:
    """Due tasks that fail to move stay in :moving and return after their hand-over deadline."""
    await run_forever("delayed pump", lambda: pump_once(store, admission), tick, BATCH)
