"""Moves tasks whose time has come from the delayed set to the registry's ready queues.

A due task whose record is missing (it should not be: records of waiting tasks do not expire) is
logged and dropped. A task left in :moving past its hand-over deadline (stuck: the scheduler
handing it over died, or the registry's answer was lost) may have reached the registry and even
finished: the results service is asked first, and one it knows to have started is not handed over
again (`_started`), so a finished body does not run a second time. A batch whose write Redis
refuses is tried task by task, so one poison task cannot hold the others back; one that still fails
stays in :moving and returns after its hand-over deadline. A registry or results service that does
not answer (writing.Unanswered) leaves the batch in :moving, due again after
writing.RETRY_IN_DOUBT_MS (the registry skips a task it got meanwhile). So does a step that fails
in any other way once it has claimed its batch (a Redis command refused, or Redis gone mid-step),
and when Redis cannot take even that, the next step brings the batch forward before it claims
anything (owed.py): a Redis that was away for a moment delays the batch by about a second, not by
HANDOVER_MS.
"""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common.errors import out_of_reach
from tasktide_services.common.events import now_ms
from tasktide_services.common.loop import run_forever
from tasktide_services.common.peers import Peers
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.owed import Owed
from tasktide_services.scheduler.store import HANDOVER_MS, SchedulerStore
from tasktide_services.scheduler.writing import RETRY_IN_DOUBT_MS, Unanswered

log = logging.getLogger("tasktide.scheduler.pump")

BATCH = 500
IDLE_MAX = 1.0  # seconds: the longest sleep between two reads of the delayed set
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
# A stuck task recorded so may not have reached the registry (a task not recorded at all too).
NOT_STARTED = frozenset({task_pb2.TASK_STATE_SCHEDULED, task_pb2.TASK_STATE_QUEUED})


async def pump_once(
    store: SchedulerStore, admission: Admission, peers: Peers, owed: Owed | None = None
) -> tuple[int, float]:
    """Moves up to BATCH due tasks; returns how many were claimed and when (Unix ms) the next
    one is due (math.inf: none waits). A step that fails once it has claimed its batch brings the
    batch forward in :moving (or leaves it `owed`) and raises."""
    owed = owed if owed is not None else Owed()
    await owed.settle(store.due_again, store.moving_at)
    now = now_ms()
    deadline = now + HANDOVER_MS  # the claim's; what finds it again when its answer is lost
    ids: list[str] = []
    try:
        ids, stuck, nxt = await store.claim_due(now, deadline, BATCH)
        return await _hand_over(store, admission, peers, ids, stuck, nxt) if ids else (0, nxt)
    except Exception as exc:
        if out_of_reach(exc):  # the claim's answer may be what was lost
            owed.lost(deadline)
        await owed.bring_back(store.due_again, ids)
        raise


async def _hand_over(
    store: SchedulerStore, admission: Admission, peers: Peers, ids: list[str], stuck: int, nxt: float
) -> tuple[int, float]:
    """The claimed tasks (`stuck` stuck ones first) checked, loaded and handed to the registry."""
    try:
        started = await _started(peers, ids[:stuck]) if stuck else set()
    except Exception as exc:  # noqa: BLE001 - see below
        if out_of_reach(exc):  # the results service away: not one task's fault, and it may come back
            log.warning("%d tasks left in :moving cannot be checked (%s); they are tried again soon", stuck, exc)
            await store.due_again(ids, RETRY_IN_DOUBT_MS)
            return len(ids), nxt
        # refused (a poison id among them, say): handed over unchecked, as the registry allows
        log.exception("checking %d tasks left in :moving failed; they are handed over unchecked", stuck)
        started = set()
    if started:
        await store.started_elsewhere(sorted(started))
        ids = [tid for tid in ids if tid not in started]
    records = await store.load(ids)
    missing = [tid for tid, t in zip(ids, records, strict=True) if t is None]
    for tid in missing:
        log.error("delayed task %s is due but its record is missing; it cannot run and is dropped", tid)
    found = [t for t in records if t is not None]
    try:
        moved = await _move(admission, found)
    except Unanswered as exc:  # a peer did not answer (writing.py): not one task's fault
        log.warning("%s; %d due tasks are tried again soon", exc, len(found))
        await store.due_again([t.id for t in found], RETRY_IN_DOUBT_MS)
        moved = []
    await store.handed_over(missing + moved)
    return len(ids) + len(started), nxt


async def _started(peers: Peers, task_ids: list[str]) -> set[str]:
    """Of these stuck tasks, those the results service knows to have started (running, retrying
    or ended): the registry had them, so they are not handed over again (a finished one would run
    twice). One recorded as scheduled or queued, or not at all, may never have reached the
    registry, and goes on (the registry skips a task it holds)."""
    got = await peers.results.Get(results_pb2.GetRequest(task_ids=task_ids))
    return {tid for tid, r in zip(task_ids, got.results, strict=True) if r.found and r.state not in NOT_STARTED}


async def _move(admission: Admission, tasks: list[task_pb2.Task]) -> list[str]:
    """The ids of the due tasks written to their ready queues."""
    if not tasks:
        return []
    try:
        await admission.due(tasks)
        return [t.id for t in tasks]
    except _UNREACHABLE:
        raise
    except Unanswered:  # a peer out of reach, not one task: pump_once brings the batch back soon
        raise
    except Exception:  # noqa: BLE001 - one task may be the cause: the others go on
        if len(tasks) == 1:
            log.exception(
                "due task %s could not be queued; it is tried again in %d s", tasks[0].id, HANDOVER_MS // 1000
            )
            return []
        log.exception("queueing %d due tasks failed; trying them one by one", len(tasks))
    moved: list[str] = []
    for t in tasks:
        moved += await _move(admission, [t])
    return moved


async def run_pump(store: SchedulerStore, admission: Admission, peers: Peers, tick: float) -> None:
    """Due tasks that fail to move stay in :moving and return after their hand-over deadline.
    Between steps the pump sleeps until the next due time read by the step, woken early when
    this process delays a task due sooner (store.delayed_alarm), but steps at most every `tick`
    (a task is moved at most `tick` late); a task delayed by another process is seen at most
    max(tick, IDLE_MAX) seconds late. `tick` is also the pause after a failed step."""

    owed = Owed()

    async def step() -> int:
        started = now_ms()
        handled, nxt = await pump_once(store, admission, peers, owed)
        if handled < BATCH:  # steps at most every tick: tasks due close together move together
            await store.delayed_alarm.sleep_until(nxt, max(tick, IDLE_MAX), started + tick * 1000)
        return BATCH  # its own pause taken: run_forever goes on at once

    await run_forever("delayed pump", step, tick, BATCH)
