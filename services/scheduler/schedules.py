"""Periodic schedules: the Scheduler's schedule RPCs and the loop that fires due occurrences.

Every scheduler replica runs the loop; there is no separate beat process. A schedule fires once
per occurrence however many replicas run, because firing is three steps:

1. `schedule_claim` (one Lua script) claims the occurrence only while the schedule's next
   occurrence is still the one this replica read, and in the same step advances the schedule to
   its following occurrence and notes the claimed one in :firing with a hand-over deadline. Of
   several replicas that read the same occurrence exactly one claims it.
2. The claimant submits the task through admission (admission.py: validation, rate limits,
   tracing hooks), with the idempotency key `schedule:{id}:{occurrence ms}`.
3. `schedule_fired` records the task id and removes the occurrence from :firing.

A replica that dies between 1 and 3 leaves the occurrence in :firing; once its deadline passes
another replica submits it again, and the idempotency key turns a submission that had in fact
happened into a no-op. Occurrences missed while no scheduler ran fire once on catch-up (the due
occurrence stands for all of them); the schedule then continues from its next future occurrence.
"""

from __future__ import annotations

import logging

import grpc

from tasktide.v1 import scheduler_pb2, task_pb2
from tasktide_services.common import tenancy
from tasktide_services.common.auth import current_caller
from tasktide_services.common.errors import NotFound, ServiceError, out_of_reach
from tasktide_services.common.events import now_ms
from tasktide_services.common.loop import run_forever
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler import keys, occurrences
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.owed import Owed
from tasktide_services.scheduler.schedule_store import ScheduleStore
from tasktide_services.scheduler.store import SchedulerStore
from tasktide_services.scheduler.writing import RETRY_IN_DOUBT_MS

log = logging.getLogger("tasktide.scheduler.schedules")

HANDOVER_MS = 30_000
BATCH = 200
IDLE_MAX = 1.0  # seconds: the longest sleep between two reads of the schedules
SCHEDULE_HEADER = "tasktide-schedule"
OCCURRENCE_HEADER = "tasktide-occurrence"

# A claimed occurrence: (schedule id, occurrence ms, its schedule; None when it was deleted).
Claimed = tuple[str, int, scheduler_pb2.Schedule | None]


def schedule_store(store: SchedulerStore) -> ScheduleStore:
    return ScheduleStore(store.redis, store.scripts, store.schedule_alarm)


def idempotency_key(schedule_id: str, occurrence: int) -> str:
    return f"schedule:{schedule_id}:{occurrence}"


def task_spec(s: scheduler_pb2.Schedule, occurrence: int) -> task_pb2.TaskSpec:
    """The task fired for one occurrence of a schedule."""
    spec = task_pb2.TaskSpec()
    spec.CopyFrom(s.task)
    spec.idempotency_key = idempotency_key(s.id, occurrence)
    spec.headers[SCHEDULE_HEADER] = s.id
    spec.headers[OCCURRENCE_HEADER] = str(occurrence)
    return spec


class ScheduleRpcs:
    """The schedule RPCs of the Scheduler service (SchedulerService inherits them)."""

    store: SchedulerStore
    settings: ServerSettings

    async def _schedule(self, schedule_id: str) -> tuple[scheduler_pb2.Schedule, str]:
        """The schedule the caller names (in its namespace) and its revision."""
        stored = tenancy.caller_name(current_caller(), schedule_id, "schedule id")
        (got,) = await schedule_store(self.store).get_many([occurrences.schedule_id(stored)])
        if got is None:
            raise NotFound(f"no schedule with id {schedule_id}")
        return got

    def _shown(self, s: scheduler_pb2.Schedule) -> scheduler_pb2.Schedule:
        """A stored schedule as its caller named it (without its namespace)."""
        caller = current_caller()
        if not tenancy.acts_everywhere(caller):
            s.id = tenancy.unscoped(caller.namespace, s.id) or s.id
        return s

    async def PutSchedule(
        self, req: scheduler_pb2.PutScheduleRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.Schedule:
        caller = current_caller()
        s = scheduler_pb2.Schedule()
        s.CopyFrom(req.schedule)
        given = s.id
        s.id = tenancy.caller_name(caller, s.id, "schedule id")
        if s.HasField("task"):
            tenancy.stamp(s.task, caller)  # the tasks it fires belong to the caller's namespace
        occurrences.check(s, self.settings.limits)
        now = now_ms()
        await schedule_store(self.store).put(s, occurrences.first(s, now), now, req.keep_paused)
        return self._shown((await self._schedule(given))[0])

    async def GetSchedule(
        self, req: scheduler_pb2.GetScheduleRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.Schedule:
        return self._shown((await self._schedule(req.id))[0])

    async def ListSchedules(
        self, req: scheduler_pb2.ListSchedulesRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.ListSchedulesResponse:
        caller = current_caller()
        st = schedule_store(self.store)
        ids = [i for i in await st.ids() if tenancy.visible(caller, i)]
        found = await st.get_many(ids)
        return scheduler_pb2.ListSchedulesResponse(schedules=[self._shown(g[0]) for g in found if g is not None])

    async def DeleteSchedule(
        self, req: scheduler_pb2.DeleteScheduleRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.DeleteScheduleResponse:
        stored = tenancy.caller_name(current_caller(), req.id, "schedule id")
        deleted = await schedule_store(self.store).delete(occurrences.schedule_id(stored))
        return scheduler_pb2.DeleteScheduleResponse(deleted=deleted)

    async def PauseSchedule(
        self, req: scheduler_pb2.PauseScheduleRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.Schedule:
        st = schedule_store(self.store)
        for _ in range(5):
            s, rev = await self._schedule(req.id)
            nxt = 0 if req.paused else occurrences.first(s, now_ms())
            done = await st.pause(s.id, req.paused, rev, nxt)
            if done == 0:
                raise NotFound(f"no schedule with id {req.id}")
            if done == 1:
                return self._shown((await self._schedule(req.id))[0])
        raise ServiceError(f"schedule {req.id} kept changing; try again")


async def _claim(st: ScheduleStore, now: int, deadline: int, taken: list[str]) -> tuple[list[Claimed], float]:
    """Occurrences this replica must submit, claimed with the hand-over deadline `deadline`: stuck
    hand-overs first, then newly claimed ones (their members of :firing appended to `taken` as they
    are claimed); and the earliest time in the sets as read (Unix ms, math.inf: none)."""
    stuck, due, nxt = await st.poll(now, deadline, BATCH)
    taken += [keys.firing(sid, occ) for sid, occ in stuck]
    found = await st.get_many(sorted({sid for sid, _ in stuck}))
    defs = {g[0].id: g[0] for g in found if g is not None}
    out: list[Claimed] = [(sid, occ, defs.get(sid)) for sid, occ in stuck]
    for d in due:
        try:
            nxt = occurrences.following(d.schedule, d.occurrence, now)
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
            log.exception("schedule %s: cannot compute its next occurrence", d.schedule.id)
            continue
        if await st.claim(d, nxt, deadline):
            taken.append(keys.firing(d.schedule.id, d.occurrence))
            out.append((d.schedule.id, d.occurrence, d.schedule))
    return out, nxt


async def fire_once(store: SchedulerStore, admission: Admission, owed: Owed | None = None) -> tuple[int, float]:
    """Claim and submit the occurrences that are due; returns how many were handled, and the
    earliest occurrence or hand-over deadline read (Unix ms; math.inf: none). A step that fails
    once it has claimed brings its claims forward in :firing (or leaves them `owed`) and raises."""
    st = schedule_store(store)
    owed = owed if owed is not None else Owed()
    await owed.settle(st.firing_again, st.firing_at)
    now = now_ms()
    deadline = now + HANDOVER_MS  # the claims'; what finds them again when an answer is lost
    taken: list[str] = []  # the members of :firing this step claimed
    try:
        claimed, nxt = await _claim(st, now, deadline, taken)
        await _fire(st, admission, claimed)
    except Exception as exc:
        if out_of_reach(exc):  # a claim's answer may be what was lost
            owed.lost(deadline)
        await owed.bring_back(st.firing_again, taken)
        raise
    return len(claimed), nxt


async def _fire(st: ScheduleStore, admission: Admission, claimed: list[Claimed]) -> None:
    """Submits the claimed occurrences and marks them fired. One the platform refuses (its limits
    changed since the schedule was put) is let go rather than tried forever; one that could not be
    submitted for now (Redis or another service out of reach) is submitted again in a second, under
    its idempotency key."""
    firing = [(sid, occ, s) for sid, occ, s in claimed if s is not None]
    done: list[tuple[str, int, str]] = [(sid, occ, "") for sid, occ, s in claimed if s is None]  # deleted
    again: list[str] = []
    specs = [task_spec(s, occ) for _, occ, s in firing]
    try:
        results = await admission.submit(specs) if specs else []
        done += [(sid, occ, r.task_id) for (sid, occ, _), r in zip(firing, results, strict=True)]
    except Exception:  # noqa: BLE001 - one spec may be the cause: the others go on
        for (sid, occ, _), spec in zip(firing, specs, strict=True):
            try:
                (r,) = await admission.submit([spec])
                done.append((sid, occ, r.task_id))
            except Exception as exc:  # noqa: BLE001 - sorted below
                if isinstance(exc, ServiceError) and not out_of_reach(exc):
                    log.error("schedule %s: occurrence %d refused: %s", sid, occ, exc)
                    done.append((sid, occ, ""))
                else:
                    log.warning("schedule %s: occurrence %d not submitted for now (%s); again soon", sid, occ, exc)
                    again.append(keys.firing(sid, occ))
    await st.fired(done)
    await st.firing_again(again, RETRY_IN_DOUBT_MS)


async def run_schedules(store: SchedulerStore, admission: Admission, tick: float) -> None:
    """Claimed occurrences that fail to fire wait in :firing and return a second later (owed.py).
    Between steps the loop sleeps until the earliest time read (common/alarm.py), at most
    max(tick, IDLE_MAX) seconds: an occurrence another replica put earlier is fired that late
    at most; one put or resumed in this process wakes it at once."""
    st = schedule_store(store)
    owed = Owed()

    async def step() -> int:
        started = now_ms()
        handled, nxt = await fire_once(store, admission, owed)
        if handled < BATCH:  # steps at most every tick (something due but not claimed: a tick later)
            await st.sleep_until(nxt, max(tick, IDLE_MAX), started + tick * 1000)
        return BATCH  # its own pause taken: run_forever goes on at once

    await run_forever("firing schedules", step, tick, BATCH)
