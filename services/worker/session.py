"""One worker's Session stream on the registry: credits in, assignments out, outcomes recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

from tasktide.v1 import results_pb2, task_pb2, worker_pb2
from tasktide_services.common.events import event, first_events, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.notify import Notifier, wait_any
from tasktide_services.common.peers import Peers
from tasktide_services.worker.outcomes import OutcomeHandler, report_to_workflows
from tasktide_services.worker.store import Leased, RegistryStore

log = logging.getLogger("tasktide.registry")

IDLE_POLL = 1.0  # a safety net under pub/sub wake-ups
MAX_ASSIGN = 256
# How long the events of tasks just dispatched (QUEUED, RUNNING) wait for an outcome to be recorded
# with: a short task's whole story then costs one Redis round trip instead of two.
STARTED_LINGER = 0.02
# The linger's timer may run a hair before loop.time() reaches the time it was set for (uvloop: by
# float rounding); without slack such events would wait for the session's next outcome.
TIMER_SLACK = 0.001


class Session:
    def __init__(self, session_id: str, hello: worker_pb2.Hello) -> None:
        self.id = session_id
        self.hello = hello
        self.queues = list(hello.queues)
        self.credit = 0
        self.credit_changed = asyncio.Event()
        self.out: asyncio.Queue[worker_pb2.RegistryMessage | None] = asyncio.Queue()
        # Leases held by this session's worker: for cancel signals, and to settle an outcome without
        # asking Redis for its task while its lease is far from its deadline (outcomes.py).
        self.assigned: dict[str, Leased] = {}
        # Outcomes received and RUNNING events to record, settled in order by one task per session.
        self.to_settle: list[task_pb2.Outcome] = []
        self.to_record: list[task_pb2.TaskEvent] = []
        self.settle_wake = asyncio.Event()
        self.record_at = 0.0  # loop time when waiting events are recorded even with no outcome
        self.closing = False

    def settle(self, outcomes: Iterable[task_pb2.Outcome] = (), started: Iterable[task_pb2.TaskEvent] = ()) -> None:
        self.to_settle.extend(outcomes)
        started = list(started)
        if started:
            if not self.to_record:
                loop = asyncio.get_running_loop()
                self.record_at = loop.time() + STARTED_LINGER
                loop.call_later(STARTED_LINGER, self.settle_wake.set)
            self.to_record.extend(started)
        if self.to_settle:
            self.settle_wake.set()

    def due(self) -> bool:
        """Whether there is something to record now: outcomes, or events that waited long enough."""
        if self.to_settle:
            return True
        now = asyncio.get_running_loop().time()
        return bool(self.to_record) and (self.closing or now + TIMER_SLACK >= self.record_at)

    def grant(self, n: int) -> None:
        if n:
            self.credit += n
            self.credit_changed.set()

    def send(self, **kind: object) -> None:
        self.out.put_nowait(worker_pb2.RegistryMessage(**kind))  # type: ignore[arg-type]


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
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.peers = peers
        self.outcomes = outcomes
        self.lease_ms = lease_ms
        self.hooks = hooks or ServiceHooks()

    async def read(self, session: Session, requests: AsyncIterator[worker_pb2.WorkerMessage]) -> None:
        try:
            async for msg in requests:
                kind = msg.WhichOneof("kind")
                if kind == "credit":
                    session.grant(msg.credit)
                elif kind == "outcomes":
                    # The worker is free for more at once; recording happens in order, behind.
                    session.settle(list(msg.outcomes.outcomes))
                    session.grant(msg.outcomes.credit)
                elif kind == "heartbeat":
                    await self._heartbeat(session, list(msg.heartbeat.leases))
                elif kind == "release":
                    await self._release(session, list(msg.release.leases))
                elif kind == "progress":
                    await self.outcomes.progress(msg.progress)
        except Exception:  # noqa: BLE001 - the stream is gone or broken; its leases will expire
            log.exception("session %s reader failed", session.id)
        finally:
            session.out.put_nowait(None)

    async def settle(self, session: Session) -> None:
        """Record what the session reported, batch after batch, merging what piled up meanwhile.
        Ends once the session is closing and nothing is left."""
        while True:
            if not session.due():
                if session.closing:
                    return
                session.settle_wake.clear()
                await session.settle_wake.wait()
                continue
            outcomes, session.to_settle = session.to_settle, []
            started, session.to_record = session.to_record, []
            try:
                for rejected in await self.outcomes.handle(outcomes, started, session.assigned):
                    session.send(rejected=rejected)
            except Exception:  # noqa: BLE001 - the leases stay; they expire and the tasks run again
                log.exception("session %s: recording %d outcomes failed", session.id, len(outcomes))
            for o in outcomes:
                session.assigned.pop(o.task_id, None)

    async def _release(self, session: Session, leases: list[worker_pb2.LeaseRef]) -> None:
        """Leases given back unstarted: the tasks wait in their queue again, and say so. A worker
        gives leases back when it drains, so the session's remaining credit is withdrawn too."""
        session.credit = 0
        held = [t for t in await self.store.hold(leases, now_ms() + self.lease_ms) if t is not None]
        await self.store.release(leases)
        for r in leases:
            session.assigned.pop(r.task_id, None)
        if held:
            session.settle(started=[event(t, task_pb2.TASK_STATE_QUEUED) for t in held])

    async def _heartbeat(self, session: Session, leases: list[worker_pb2.LeaseRef]) -> None:
        deadline = now_ms() + self.lease_ms
        stale = set(await self.store.extend(leases, deadline))
        for r in leases:
            held = session.assigned.get(r.task_id)
            if r.task_id in stale:
                session.send(rejected=worker_pb2.LeaseRejected(lease=r, reason="lease expired"))
            elif held is not None and held.token == r.lease_token:
                held.deadline_ms = deadline

    async def dispatch(self, session: Session) -> None:
        # A queue found empty, with the wake-up event taken before it was looked at: while that
        # event has not fired, nothing was added to the queue and asking Redis again is pointless
        # (for IDLE_POLL at most, the safety net under pub/sub).
        drained: dict[str, tuple[asyncio.Event, float]] = {}
        loop = asyncio.get_running_loop()
        while True:
            while session.credit <= 0:
                session.credit_changed.clear()
                await session.credit_changed.wait()
            wake = {q: self.notifier.event(q) for q in session.queues}
            leased: list[Leased] = []
            for q in session.queues:
                want = min(session.credit - len(leased), MAX_ASSIGN)
                if want <= 0:
                    break
                seen = drained.get(q)
                if seen is not None and seen[0] is wake[q] and loop.time() - seen[1] < IDLE_POLL:
                    continue
                got = await self.store.dispatch(q, now_ms(), self.lease_ms, want)
                if len(got) < want:
                    drained[q] = (wake[q], loop.time())
                else:
                    drained.pop(q, None)
                leased += got
            if not leased:
                await wait_any(list(wake.values()), IDLE_POLL)
                continue
            runnable = await self.drop_expired(leased)
            if not runnable:
                continue
            session.credit -= len(runnable)
            self.assign(session, runnable)

    def assign(self, session: Session, runnable: list[Leased]) -> None:
        """Send leased tasks to the session's worker; their QUEUED and RUNNING events follow."""
        assignments = []
        first = [e for item in runnable for e in first_events(item.task)]
        for item in runnable:
            item.task.state = task_pb2.TASK_STATE_RUNNING
            session.assigned[item.task.id] = item
            assignments.append(
                worker_pb2.Assignment(
                    task=item.task, lease_token=item.token, deadline_ms=item.deadline_ms, delivery=item.delivery
                )
            )
        self.hooks.dispatched(session.hello.worker_id, assignments)
        session.send(assignments=worker_pb2.AssignmentBatch(assignments=assignments))
        worker_id = session.hello.worker_id
        started = [event(i.task, task_pb2.TASK_STATE_RUNNING, worker_id=worker_id) for i in runnable]
        session.settle(started=first + started)

    async def drop_expired(self, leased: list[Leased]) -> list[Leased]:
        """Tasks past their expiry are never run: their leases end and they are marked EXPIRED."""
        now = now_ms()
        expired = [i for i in leased if i.task.spec.expires_ms and i.task.spec.expires_ms <= now]
        if not expired:
            return leased
        err = task_pb2.TaskError(type="tasktide.Expired", message="the task expired before it could start")
        events = [e for i in expired for e in first_events(i.task)]
        ended = [event(i.task, task_pb2.TASK_STATE_EXPIRED, error=err) for i in expired]
        await report_to_workflows(self.peers, ended, [i.task for i in expired])
        events += ended
        await self.peers.results.Record(results_pb2.RecordRequest(events=events))
        await self.store.complete([i.ref() for i in expired])
        return [i for i in leased if i not in expired]
