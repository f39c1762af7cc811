"""One worker's Session stream on the registry: credits in, assignments out, outcomes recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from tasktide.v1 import results_pb2, task_pb2, worker_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import ServiceError, out_of_reach
from tasktide_services.common.events import event, first_events, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.loop import backoff
from tasktide_services.common.notify import Notifier, wait_any
from tasktide_services.common.partitions import Partitions
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import Limits
from tasktide_services.worker.cancelled import end_cancelled, given_back
from tasktide_services.worker.outcomes import OutcomeHandler, ref
from tasktide_services.worker.session_state import Session
from tasktide_services.worker.store import Leased, RegistryStore
from tasktide_services.worker.workflow_ends import report_to_workflows

log = logging.getLogger("tasktide.registry")

IDLE_POLL = 1.0  # a safety net under pub/sub wake-ups
MAX_ASSIGN = 256
# After a failed Redis call, a session's loops pause this long, doubled per failure in a row up to
# the maximum, before they try again.
FAILURE_PAUSE = 0.1
FAILURE_PAUSE_MAX = 1.0
# A batch of outcomes is recorded in this many attempts at most (about 5 s), unless what fails is
# reaching the results service or Redis (errors.out_of_reach): that is tried while the session lasts.
SETTLE_ATTEMPTS = 8


class SessionLoops:
    """The reader and dispatcher of one session; shares store, notifier and peers with the service."""

    def __init__(
        self,
        store: RegistryStore,
        notifier: Notifier,
        peers: Peers,
        outcomes: OutcomeHandler,
        lease_ms: int,
        hooks: ServiceHooks | None = None,
        limits: Limits | None = None,
        max_credit: int | None = None,
        partitions: Partitions | None = None,
    ) -> None:
        self.partitions = partitions or Partitions()
        self.limits = limits or Limits()
        self.max_credit = max_credit  # credit outstanding per session at most (None: no limit)
        self.store = store
        self.notifier = notifier
        self.peers = peers
        self.outcomes = outcomes
        self.lease_ms = lease_ms
        self.hooks = hooks or ServiceHooks()

    async def read(self, session: Session, requests: AsyncIterator[worker_pb2.WorkerMessage]) -> None:
        try:
            async for msg in requests:
                session.hear()
                kind = msg.WhichOneof("kind")
                if kind == "credit":
                    session.grant(msg.credit, self.max_credit)
                elif kind == "outcomes":
                    validate.batch_size(len(msg.outcomes.outcomes), self.limits)
                    # The worker is free for more at once; recording happens in order, behind.
                    session.settle(list(msg.outcomes.outcomes))
                    session.grant(msg.outcomes.credit, self.max_credit)
                else:
                    await self._handle(session, kind, msg)
                if session.full():  # flow control: read nothing more until there is room
                    await session.room.wait()
        except ServiceError as exc:  # a worker breaking the protocol's bounds: the stream ends with it
            session.error = exc
        except Exception:  # noqa: BLE001 - the stream is gone or broken; its leases will expire
            log.exception("session %s reader failed", session.id)
        finally:
            session.out.put_nowait(None)

    async def _handle(self, session: Session, kind: str | None, msg: worker_pb2.WorkerMessage) -> None:
        """A message that needs Redis. A failed call is logged and the session goes on: a heartbeat
        not applied lets its leases run toward their deadline, a release not applied lets them
        expire, a progress report is lost."""
        try:
            if kind == "heartbeat":
                validate.batch_size(len(msg.heartbeat.leases), self.limits)
                await self._heartbeat(session, list(msg.heartbeat.leases))
            elif kind == "release":
                validate.batch_size(len(msg.release.leases), self.limits)
                await self._release(session, list(msg.release.leases))
            elif kind == "progress":
                await self.outcomes.progress(msg.progress)
            elif kind == "concurrency":  # the worker resized its pool (ResizeWorker)
                session.info.concurrency = session.hello.concurrency = validate.concurrency(msg.concurrency)
                await self.store.put_worker(session.info)
        except (asyncio.CancelledError, ServiceError):
            raise
        except Exception:  # noqa: BLE001 - see above
            log.warning("session %s: handling a %s message failed", session.id, kind, exc_info=True)

    async def settle(self, session: Session) -> None:
        """Record what the session reported, batch after batch, merging what piled up meanwhile.
        Ends once the session is closing and nothing is left. A batch that fails is tried again,
        pausing in between. While the results service or Redis is out of reach, it is tried for as
        long as the session lasts, its leases kept (`_keep_leases`: the tasks are not run again);
        a batch that fails otherwise is tried SETTLE_ATTEMPTS times in all, then left to its leases'
        expiry (so a poison outcome cannot hold up the session's others for good)."""
        failures = 0
        while True:
            if not session.due():
                if session.closing:
                    return
                session.settle_wake.clear()
                await session.settle_wake.wait()
                continue
            outcomes, started = session.take()
            try:
                for rejected in await self.outcomes.handle(outcomes, started, session.assigned):
                    session.send(rejected=rejected)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again; at worst the leases expire and the tasks run again
                failures += 1
                away = out_of_reach(exc)
                if (away or failures < SETTLE_ATTEMPTS) and not session.closing:
                    # Recording again is harmless: a task keeps its first final result, and a
                    # lease ends only with its current token.
                    if failures <= SETTLE_ATTEMPTS or failures % 60 == 0:
                        log.warning(
                            "session %s: recording %d outcomes failed (%d in a row); trying again",
                            session.id,
                            len(outcomes),
                            failures,
                            exc_info=failures == 1,
                        )
                    session.to_settle[:0] = outcomes
                    session.to_record[:0] = started
                    if away:
                        await self._keep_leases(outcomes)
                    await asyncio.sleep(backoff(failures, FAILURE_PAUSE, FAILURE_PAUSE_MAX))
                    continue
                log.exception(
                    "session %s: recording %d outcomes failed; their leases will expire", session.id, len(outcomes)
                )
            failures = 0
            for o in outcomes:
                session.assigned.pop(o.task_id, None)

    async def _keep_leases(self, outcomes: list[task_pb2.Outcome]) -> None:
        """The leases of outcomes waiting to be recorded are extended, as a heartbeat would: their
        tasks ran, and must not be handed out again while the results service is away."""
        try:
            await self.store.extend([ref(o) for o in outcomes], now_ms() + self.lease_ms)
        except Exception:  # noqa: BLE001 - Redis away too: the leases run toward their deadline
            log.debug("extending the leases of %d outcomes waiting to be recorded failed", len(outcomes), exc_info=True)

    async def _release(self, session: Session, leases: list[worker_pb2.LeaseRef]) -> None:
        """Leases given back unstarted: the tasks wait in their queue again, and say so. A worker
        gives leases back when it drains, so the session's remaining credit is withdrawn too."""
        session.credit = 0
        held = [t for t in await self.store.hold(leases, now_ms() + self.lease_ms) if t is not None]
        kept = {r.task_id: r for r in (await self.store.release(leases)).cancel}
        for r in leases:
            session.assigned.pop(r.task_id, None)
        message = given_back(session.hello.worker_id)
        if kept:  # a Cancel the worker did not hear: ended here, not queued again (cancelled.py)
            cancel = [Leased(t, kept[t.id].lease_token, 0, 0) for t in held if t.id in kept]
            started = session.take_started(set(kept))  # their RUNNING events first
            await end_cancelled(self.store, self.peers, cancel, message, started)
        back = [event(t, task_pb2.TASK_STATE_QUEUED, message=message) for t in held if t.id not in kept]
        if back:
            session.settle(started=back)

    async def _heartbeat(self, session: Session, leases: list[worker_pb2.LeaseRef]) -> None:
        deadline = now_ms() + self.lease_ms
        extended = await self.store.extend(leases, deadline)
        stale = set(extended.stale)
        for r in leases:
            held = session.assigned.get(r.task_id)
            if r.task_id in stale:
                if held is not None and held.token == r.lease_token:
                    del session.assigned[r.task_id]
                session.send(rejected=worker_pb2.LeaseRejected(lease=r, reason="lease expired"))
            elif held is not None and held.token == r.lease_token:
                held.deadline_ms = deadline
                grace = extended.cancel.get(r.task_id)
                if grace is not None and not held.cancel_sent:  # the signal was missed (keys.py :cancel)
                    held.cancel_sent = True
                    session.send(cancel=worker_pb2.CancelSignal(task_id=r.task_id, grace_seconds=grace))

    async def dispatch(self, session: Session) -> None:
        """Lease tasks for the session's credit, queue after queue, for as long as it lasts. A failed
        Redis call is logged and tried again after a pause (FAILURE_PAUSE, doubling up to
        FAILURE_PAUSE_MAX): the loop never ends on one, so an idle worker is served again as soon
        as Redis is back."""
        # A queue found empty, with the wake-up event taken before it was looked at: while that
        # event has not fired, nothing was added to the queue and asking Redis again is pointless
        # (for IDLE_POLL at most, the safety net under pub/sub).
        drained: dict[str, tuple[asyncio.Event, float]] = {}
        groups = [self.partitions.of(q) for q in session.hello.queues]  # a queue and its partitions
        turn = 0
        failures = 0
        while True:
            while not session.ready():
                session.credit_changed.clear()
                if session.credit > 0:  # stalled: look again when the worker speaks, or after a while
                    await wait_any([session.credit_changed], IDLE_POLL)
                else:
                    await session.credit_changed.wait()
            turn += 1
            try:
                await self._dispatch_step(session, drained, groups, turn)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away or a poison entry: log, pause, go on
                failures += 1
                pause = backoff(failures, FAILURE_PAUSE, FAILURE_PAUSE_MAX)
                log.warning(
                    "session %s: dispatch failed (%d in a row); again in %.1f s",
                    session.id,
                    failures,
                    pause,
                    exc_info=failures == 1,
                )
                drained.clear()
                await asyncio.sleep(pause)
                continue
            if failures:
                log.info("session %s: dispatching again after %d failures", session.id, failures)
                failures = 0

    async def _dispatch_step(
        self,
        session: Session,
        drained: dict[str, tuple[asyncio.Event, float]],
        groups: list[list[str]],
        turn: int,
    ) -> None:
        """Lease what the session's credit allows, queue after queue in the worker's order. The
        partitions of a queue share what is left for it, starting one further at every step."""
        loop = asyncio.get_running_loop()
        wake = {q: self.notifier.event(q) for q in session.queues}
        leased = session.taken = []  # known to the session until assigned
        for group in groups:
            budget = min(session.credit - len(leased), MAX_ASSIGN)
            if budget <= 0:
                break
            order = group[turn % len(group) :] + group[: turn % len(group)]
            taken = 0
            for i, q in enumerate(order):
                want = -(-(budget - taken) // (len(order) - i))  # an even share of what is left
                if want <= 0:
                    break
                seen = drained.get(q)
                if seen is not None and seen[0] is wake[q] and loop.time() - seen[1] < IDLE_POLL:
                    continue
                got = await self._lease(session, q, want)
                if len(got) < want:
                    drained[q] = (wake[q], loop.time())
                else:
                    drained.pop(q, None)
                taken += len(got)
                leased += got
        if not leased:
            await wait_any(list(wake.values()), IDLE_POLL)
            return
        runnable = await self.drop_expired(leased)
        if runnable:
            session.credit -= len(runnable)
            self.assign(session, runnable)
        session.taken = []

    async def _lease(self, session: Session, queue: str, want: int) -> list[Leased]:
        """The `dispatch` call of one queue. A session that ends meanwhile cancels the dispatcher,
        not the call: its leases, once Redis has answered, are the session's to give back."""
        call = asyncio.ensure_future(self.store.dispatch(queue, now_ms(), self.lease_ms, want))
        session.leasing.add(call)
        try:
            got = await asyncio.shield(call)
        except asyncio.CancelledError:
            raise  # the call stays in session.leasing
        except BaseException:
            session.leasing.discard(call)
            raise
        session.leasing.discard(call)
        return got

    def assign(self, session: Session, runnable: list[Leased]) -> None:
        """Send leased tasks to the session's worker; their QUEUED and RUNNING events follow."""
        first = [e for item in runnable for e in first_events(item.task)]
        message = worker_pb2.RegistryMessage()  # built in place: each task copied once, not three times
        assignments = message.assignments.assignments
        for item in runnable:
            item.task.state = task_pb2.TASK_STATE_RUNNING
            session.assigned[item.task.id] = item
            a = assignments.add(lease_token=item.token, deadline_ms=item.deadline_ms, delivery=item.delivery)
            a.task.CopyFrom(item.task)
        self.hooks.dispatched(session.hello.worker_id, assignments)
        session.out.put_nowait(message)
        worker_id = session.hello.worker_id
        started = [
            event(i.task, task_pb2.TASK_STATE_RUNNING, worker_id=worker_id, message=redelivered(i.delivery))
            for i in runnable
        ]
        session.settle(started=first + started)

    async def drop_expired(self, leased: list[Leased]) -> list[Leased]:
        """Tasks past their expiry are never run: their leases end and they are marked EXPIRED."""
        expired = expired_of(leased, now_ms())
        if not expired:
            return leased
        err = task_pb2.TaskError(type="tasktide.Expired", message="the task expired before it could start")
        events = [e for i in expired for e in first_events(i.task)]
        ended = [event(i.task, task_pb2.TASK_STATE_EXPIRED, error=err) for i in expired]
        events += ended
        try:
            await report_to_workflows(self.peers, ended, [i.task for i in expired])
            await self.peers.results.Record(results_pb2.RecordRequest(events=events))
            await self.store.complete([i.ref() for i in expired])
        except Exception:  # noqa: BLE001 - their leases expire and they are dropped on a later delivery
            log.exception("recording %d expired tasks failed", len(expired))
        return [i for i in leased if i not in expired]


def redelivered(delivery: int) -> str:
    """What a RUNNING event says of its delivery: nothing for the first; from the second on, that
    the lease of the one before expired (a worker lost or stopped; a delivery given back unstarted
    does not count, scripts.lua `release`)."""
    return f"delivery {delivery}: the lease of delivery {delivery - 1} expired" if delivery > 1 else ""


def expired_of(leased: list[Leased], now: int) -> list[Leased]:
    """The leased tasks past their expiry (never run: `SessionLoops.drop_expired`)."""
    return [i for i in leased if i.task.spec.expires_ms and i.task.spec.expires_ms <= now]
