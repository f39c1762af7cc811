"""Admission: the one place where a task enters the platform.

Every way in passes here: Submit, SubmitBatch and SubmitStream (service.py), the delayed-set pump
(pump.py), schedule firing (schedules.py), workflow stages (workflows.py), Retry, and submission in
the caller's process (direct.py). Admission

- validates a submission against the limits (`Admission.check`);
- decides what of the scheduler's state it needs (`needs`: the delayed set for a countdown or an
  ETA, an idempotency key, a rate-limit slot). This is the only such decision: the direct path
  writes a task itself only when `needs` is empty (`queued_now`), so a need added to `NEEDS`
  sends direct submissions to the scheduler with no other change;
- puts a task of a partitioned queue in one of its partitions (common/partitions.py);
- accepts it: task records and the delayed set (the scheduler's keys), events (the results
  service's), ready queues (the registry's), written by the `Writer` chosen when the server is
  wired (writing.py): one pipeline when those services live in this process, else calls to them.
  An idempotency key is claimed before the write and confirmed by it; a write that fails lets
  the key go, so a retry of the submission is admitted afresh (store.py). A write whose answer
  from Redis was lost may have been applied: a key it confirmed is kept, and a retry is answered
  with its task. When Redis cannot be reached to let a key go (it went away with the write), the
  release is tried again (`_release_owed`) until it succeeds or the claim has lapsed (CLAIM_MS),
  so a retry is admitted once Redis is back, not only once the claim lapses. A submission
  answered with an error may otherwise have been written in part: its retry may then run the task
  twice (at least once), never zero times.

A Retry whose countdown is not a number of seconds in 0..`Limits.max_delay_seconds` (NaN, an
infinity, a negative or a huge number, from a task's own code) is a retry without delay: it is
logged, and the task runs again at once rather than staying RETRYING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tasktide.v1 import scheduler_pb2, task_pb2
from tasktide_services.common import tenancy, validate
from tasktide_services.common.auth import SERVICE, Caller
from tasktide_services.common.errors import InvalidArgument, ServiceError, Unavailable, out_of_reach, reported
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.ids import new_id, new_ids
from tasktide_services.common.layout import WORKFLOW_HEADERS
from tasktide_services.common.loop import backoff
from tasktide_services.common.partitions import Partitions
from tasktide_services.common.settings import Limits
from tasktide_services.scheduler.store import CLAIM_MS, PENDING, Claim, SchedulerStore
from tasktide_services.scheduler.writing import Accepted, KeptInDoubt, Writer

log = logging.getLogger("tasktide.scheduler")

S = task_pb2
HELD_BY = "tasktide-held-by"  # header set on a task record when a rate limit set its start
# A key another submission is writing is waited for this long (polled) before the submission is
# refused: a concurrent duplicate is answered with the written task, a dead writer's claim is not.
PENDING_WAIT = 2.0
PENDING_POLL = 0.02
# Releases that failed with Redis out of reach are owed: one task tries them all again after
# RELEASE_PAUSE, doubled per failure up to RELEASE_PAUSE_MAX, each until its claim has lapsed. At
# most RELEASES_OWED keys are owed at once; the claims of further failed writes lapse.
RELEASE_PAUSE, RELEASE_PAUSE_MAX = 0.1, 1.0
RELEASES_OWED = 4096


@dataclass(frozen=True)
class _Owed:
    """A release of a key's claim that Redis could not take when it was made."""

    claim: Claim
    pending_only: bool  # let go only if still pending (store.release_idempotency)
    until: float  # time.monotonic() when the claim has lapsed anyway


@dataclass(frozen=True)
class Need:
    """A piece of the scheduler's state that a submission may need."""

    name: str
    applies: Callable[[task_pb2.TaskSpec], bool]


DELAYED = Need("delayed set", lambda s: bool(s.countdown or s.eta_ms))
IDEMPOTENCY = Need("idempotency key", lambda s: bool(s.idempotency_key))
RATE_LIMIT = Need("rate-limit slot", lambda s: bool(s.rate_limit))
NEEDS: tuple[Need, ...] = (DELAYED, IDEMPOTENCY, RATE_LIMIT)


NO_NEEDS: frozenset[Need] = frozenset()


def needs(spec: task_pb2.TaskSpec) -> frozenset[Need]:
    """What of the scheduler's state `spec` needs; empty: it may be queued as it is, at once."""
    found = [n for n in NEEDS if n.applies(spec)]
    return frozenset(found) if found else NO_NEEDS


def new_task(spec: task_pb2.TaskSpec, now: int, task_id: str = "") -> task_pb2.Task:
    task = task_pb2.Task(id=task_id or new_id(), state=S.TASK_STATE_QUEUED, created_ms=now)
    task.spec.CopyFrom(spec)  # a fifth cheaper than the constructor's copy
    return task


def _scoped_key(spec: task_pb2.TaskSpec) -> str:
    """The idempotency key as stored: one namespace's keys never meet another's."""
    return tenancy.scoped(tenancy.namespace_of(spec), spec.idempotency_key)


def queued_now(spec: task_pb2.TaskSpec, limits: Limits, partitions: Partitions | None = None) -> task_pb2.Task | None:
    """For a writer outside the scheduler (direct.py): the task to put in its ready queue as the
    scheduler would accept it, or None when admission must run in the scheduler (the spec needs its
    state). Raises the scheduler's errors for a spec it would refuse."""
    if needs(spec):
        return None
    validate.spec(spec, limits)
    if partitions is not None:
        spec.queue = partitions.choose(spec.queue, spec.priority)
    return new_task(spec, now_ms())


class Admission:
    def __init__(
        self,
        store: SchedulerStore,
        writer: Writer,
        limits: Limits,
        hooks: ServiceHooks,
        partitions: Partitions | None = None,
    ) -> None:
        self._store = store
        self._partitions = partitions or Partitions()
        self._limits = limits
        self._writer = writer
        self._hooks = hooks
        self._owed: list[_Owed] = []  # releases to try again (`_release_owed`), at most RELEASES_OWED
        self._releaser: asyncio.Task[None] | None = None  # the one task that tries them

    def check(self, spec: task_pb2.TaskSpec, caller: Caller = SERVICE) -> None:
        """Raises the error a person can act on for a spec the scheduler refuses; makes a spec a
        caller submits belong to the caller's namespace (common/tenancy.py)."""
        tenancy.stamp(spec, caller)
        validate.spec(spec, self._limits)
        if not tenancy.acts_everywhere(caller):
            for header in WORKFLOW_HEADERS:
                if header in spec.headers:
                    raise InvalidArgument(f"header {header!r} is set by the platform only")

    def check_batch(self, count: int) -> None:
        validate.batch_size(count, self._limits)

    async def submit(
        self, specs: list[task_pb2.TaskSpec], ids: list[str] | None = None, caller: Caller = SERVICE
    ) -> list[scheduler_pb2.SubmitResponse]:
        """Accept every spec, or none when one is refused (its error is raised). `ids`: given by
        the caller, for workflows whose ids are known in advance. `caller`: who submits them (the
        services themselves when not given)."""
        for s in specs:
            self.check(s, caller)
        return await self._accept(specs, ids)

    async def submit_each(
        self, specs: list[task_pb2.TaskSpec], caller: Caller = SERVICE
    ) -> list[scheduler_pb2.SubmitResponse | ServiceError]:
        """Each spec checked on its own, the valid ones accepted together (one write); a refused
        spec gets its error in its place, and a failed write is the error of every valid one."""
        out: list[scheduler_pb2.SubmitResponse | ServiceError] = []
        valid: list[task_pb2.TaskSpec] = []
        for s in specs:
            try:
                self.check(s, caller)
            except ServiceError as exc:
                out.append(exc)
            except Exception as exc:  # noqa: BLE001 - a defect in a check refuses that spec only
                out.append(reported(exc, "Scheduler", log))
            else:
                out.append(scheduler_pb2.SubmitResponse())
                valid.append(s)
        if not valid:
            return out
        try:
            accepted: list[scheduler_pb2.SubmitResponse | ServiceError] = list(await self._accept(valid))
        except Exception as exc:  # noqa: BLE001 - reported to each submitter
            accepted = [reported(exc, "Scheduler", log)] * len(valid)
        answers = iter(accepted)
        return [r if isinstance(r, ServiceError) else next(answers) for r in out]

    async def _accept(
        self, specs: list[task_pb2.TaskSpec], ids: list[str] | None = None
    ) -> list[scheduler_pb2.SubmitResponse]:
        now = now_ms()
        if self._partitions.counts:  # checked: a queue name as given (and stored), never a partition's
            for s in specs:
                s.queue = self._partitions.choose(s.queue, s.priority)
        tasks = [new_task(s, now, tid) for s, tid in zip(specs, ids or new_ids(len(specs)), strict=True)]
        plans = [needs(t.spec) for t in tasks]
        responses = [scheduler_pb2.SubmitResponse(task_id=t.id) for t in tasks]
        keyed = [i for i, plan in enumerate(plans) if IDEMPOTENCY in plan]
        claims = [Claim(_scoped_key(tasks[i].spec), tasks[i].id, 0) for i in keyed]
        try:
            existing = await self._store.claim_idempotency([(c.key, c.task_id) for c in claims])
        except Exception as exc:
            if out_of_reach(exc):  # the claims may have been made unanswered: let go those still pending
                await self._release(claims, pending_only=True)
            raise
        held = {i: found for i, found in zip(keyed, existing, strict=True) if found is not None}
        skip: set[int] = set(held)
        ours = [c for i, c in zip(keyed, claims, strict=True) if i not in skip]  # made by this submission
        try:
            written = await self._written(tasks, held)
        except BaseException:
            await self._release(ours)
            raise
        for i, task_id in written.items():
            responses[i].task_id, responses[i].existing = task_id, True
        fresh = [i for i in range(len(tasks)) if i not in skip]
        out = Accepted()
        try:
            await self._plan(tasks, plans, fresh, responses, now, out)
            with self._hooks.scheduling([tasks[i] for i in fresh], "submit"):
                await self._writer.write(out)
        except Exception as exc:
            kept = exc.task_ids if isinstance(exc, KeptInDoubt) else frozenset()  # their keys name them
            # An answer that did not come: the write may have been applied, and a key it confirmed names
            # a task that runs (a retry must be answered with it).
            await self._release([c for c in ours if c.task_id not in kept], pending_only=out_of_reach(exc))
            raise
        return responses

    async def _written(self, tasks: list[task_pb2.Task], held: dict[int, str]) -> dict[int, str]:
        """The ids of the written tasks that already hold these keys. A key another submission is
        still writing (pending) is waited for up to PENDING_WAIT; a key still pending then (its
        writer may have died between the claim and the write) is refused as UNAVAILABLE, never
        answered with an id that may not exist: a retry after the claim lapses is admitted."""
        out = {i: v for i, v in held.items() if v and not v.startswith(PENDING)}
        waiting = {i: v for i, v in held.items() if i not in out}
        deadline = time.monotonic() + PENDING_WAIT
        while waiting:
            await asyncio.sleep(PENDING_POLL)
            now = await self._store.held_idempotency([_scoped_key(tasks[i].spec) for i in waiting])
            for (i, _), value in zip(list(waiting.items()), now, strict=True):
                if value and not value.startswith(PENDING):
                    out[i] = value
                    del waiting[i]
            if waiting and time.monotonic() >= deadline:
                key = tasks[next(iter(waiting))].spec.idempotency_key
                raise Unavailable(
                    f"a submission with idempotency key {key!r} is still being written (or its writer "
                    f"stopped); retry in a few seconds"
                )
        return out

    async def _release(self, claims: list[Claim], pending_only: bool = False) -> None:
        """The write failed: the keys claimed for it are let go; with `pending_only`, those it did
        not confirm (store.py). When Redis cannot be reached now, they are owed and let go later
        (`_release_owed`); beyond RELEASES_OWED, they lapse after store.CLAIM_MS."""
        if not claims:  # nothing to release: no call, and no retry to arrange
            return
        try:
            await self._store.release_idempotency(claims, pending_only=pending_only)
        except Exception as exc:  # noqa: BLE001 - the write's own error is the one to report
            away = out_of_reach(exc)
            room = max(RELEASES_OWED - len(self._owed), 0) if away else 0
            owed, lapse = claims[:room], claims[room:]
            if lapse:
                log.error(
                    "releasing %d idempotency keys after a failed write failed; they lapse",
                    len(lapse),
                    exc_info=not away,
                )
            if owed:
                log.warning(
                    "releasing %d idempotency keys failed (%s); tried again until Redis takes it", len(owed), exc
                )
                until = time.monotonic() + CLAIM_MS / 1000
                self._owed += [_Owed(c, pending_only, until) for c in owed]
                if self._releaser is None or self._releaser.done():
                    self._releaser = asyncio.create_task(self._release_owed())

    async def _release_owed(self) -> None:
        """The owed releases, tried again together (one round trip) after a pause, growing while
        Redis stays away, until each is taken or its claim has lapsed. Letting a key go later is as
        safe as at once: the release lets go only a key that still holds this claim (store.py)."""
        failures = 0
        while self._owed:
            await asyncio.sleep(backoff(failures + 1, RELEASE_PAUSE, RELEASE_PAUSE_MAX))
            now = time.monotonic()
            if lapsed := sum(o.until <= now for o in self._owed):
                log.warning("%d idempotency keys could not be released; they lapse", lapsed)
                self._owed = [o for o in self._owed if o.until > now]
            batch = list(self._owed)
            if not batch:
                return
            try:
                await self._store.release_each([(o.claim, o.pending_only) for o in batch])
            except Exception:  # noqa: BLE001 - Redis still away: again after a pause, or they lapse
                failures += 1
                continue
            taken = {id(o) for o in batch}  # others may have been owed meanwhile
            self._owed = [o for o in self._owed if id(o) not in taken]
            log.info("released %d idempotency keys after %d more failures", len(batch), failures)
            failures = 0

    async def _plan(
        self,
        tasks: list[task_pb2.Task],
        plans: list[frozenset[Need]],
        fresh: list[int],
        responses: list[scheduler_pb2.SubmitResponse],
        now: int,
        out: Accepted,
    ) -> None:
        """What accepting the `fresh` tasks writes, into `out`."""
        slots = await self._rate_slots([tasks[i] for i in fresh if RATE_LIMIT in plans[i]], now)
        for i in fresh:
            t = tasks[i]
            if not plans[i]:  # the usual task: no time, slot or key to write, it may run at once
                out.runnable.append(t)
                responses[i].state = t.state
                continue
            s = t.spec
            eta = (s.eta_ms or (now + int(s.countdown * 1000) if s.countdown else 0)) if DELAYED in plans[i] else 0
            slot = slots.get(t.id, 0)
            if slot > max(eta, now):
                eta = slot
                s.headers[HELD_BY] = "rate_limit"
            s.eta_ms, s.countdown = eta, 0.0
            if eta > now:
                # A delayed task has a record and its event now; one that may run lives only in its
                # ready queue until dispatched (the registry then writes its QUEUED event, with its spec).
                t.state = S.TASK_STATE_SCHEDULED
                out.records.append(t)
                out.delayed.append((t.id, eta))
                out.events.append(event(t, t.state, now, spec=t.spec))
            else:
                out.runnable.append(t)
            if IDEMPOTENCY in plans[i]:
                out.claims.append(Claim(_scoped_key(s), t.id, self._store.expire_ms + max(eta - now, 0)))
            responses[i].state = t.state

    async def _rate_slots(self, tasks: list[task_pb2.Task], now: int) -> dict[str, int]:
        """Start slots for rate-limited tasks: each name's tasks are spaced by its limit."""
        by_name: dict[tuple[str, str], list[task_pb2.Task]] = {}
        for t in tasks:  # a namespace's limit is its own
            by_name.setdefault(
                (tenancy.scoped(tenancy.namespace_of(t.spec), t.spec.name), t.spec.rate_limit), []
            ).append(t)
        slots: dict[str, int] = {}
        for (name, rate), group in by_name.items():
            interval = validate.rate_interval_ms(rate)
            first = await self._store.rate_slots(name, now, interval, len(group))
            for i, t in enumerate(group):
                slots[t.id] = int(first + i * interval)
        return slots

    async def due(self, tasks: list[task_pb2.Task]) -> None:
        """Tasks of the delayed set whose time has come (pump.py): their QUEUED events, then their
        ready queues."""
        for t in tasks:
            t.state = S.TASK_STATE_QUEUED
        with self._hooks.scheduling(tasks, "due"):
            await self._writer.write(Accepted(runnable=tasks, events=[event(t, t.state) for t in tasks]))

    async def retry(self, task: task_pb2.Task, countdown: float) -> task_pb2.TaskState:
        """A task to run again after `countdown` seconds. Always through the delayed set: the pump
        hands it to the registry once the registry has forgotten the previous attempt."""
        validate.task_id(task.id)
        try:
            validate.seconds(countdown, "countdown", self._limits.max_delay_seconds)
        except ServiceError as exc:
            log.warning("task %s asked for a retry with a bad countdown (%s); it runs again at once", task.id, exc)
            countdown = 0.0
        eta = now_ms() + int(countdown * 1000)
        task.spec.eta_ms, task.spec.countdown = eta, 0.0
        task.spec.headers.pop(HELD_BY, None)
        with self._hooks.scheduling([task], "retry"):
            task.state = S.TASK_STATE_SCHEDULED
            await self._writer.write(Accepted(records=[task], delayed=[(task.id, eta)]))
        return task.state
