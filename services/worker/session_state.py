"""One worker session's state on the registry: credit, leases held, what waits to be sent and
recorded, and the bounds on all of it (the loops that drive it are in session.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.errors import ResourceExhausted, ServiceError
from tasktide_services.common.events import event, now_ms
from tasktide_services.worker.store import Leased

# Bounds on what one session holds in memory. While its outgoing queue holds OUT_MAX messages (the
# worker is not reading) or SETTLE_MAX outcomes wait to be recorded (Redis is slow), the session
# stops reading its worker's messages (gRPC flow control then holds the worker back) and leases
# nothing more. A message read before that adds at most one batch (validate.batch_size).
OUT_MAX = 256
SETTLE_MAX = 10_000
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
        # Leases the dispatcher took and has not assigned yet, and its `dispatch` calls in flight:
        # a session that ends in between gives them back (service.py, `_give_back`).
        self.taken: list[Leased] = []
        self.leasing: set[asyncio.Future[list[Leased]]] = set()
        # Outcomes received and RUNNING events to record, settled in order by one task per session.
        self.to_settle: list[task_pb2.Outcome] = []
        self.to_record: list[task_pb2.TaskEvent] = []
        self.settle_wake = asyncio.Event()
        self.record_at = 0.0  # loop time when waiting events are recorded even with no outcome
        self._linger: asyncio.TimerHandle | None = None  # wakes the settle loop at record_at
        self.closing = False
        self.drain_sent = False  # the worker was sent a Drain (DrainWorker)
        # The session's worker entry (ListWorkers), written at its start and refreshed while it lasts.
        self.info = worker_pb2.WorkerInfo()
        self.heard_ms = now_ms()  # when the worker last sent anything
        self.room = asyncio.Event()  # set while the session is under its bounds (OUT_MAX, SETTLE_MAX)
        self.room.set()
        self.error: ServiceError | None = None  # what ends the stream with a status

    def full(self) -> bool:
        """Whether the session is at one of its bounds (then `room` is cleared until `freed`)."""
        if self.out.qsize() >= OUT_MAX or len(self.to_settle) >= SETTLE_MAX:
            self.room.clear()
            return True
        return False

    def freed(self) -> None:
        """A message left the outgoing queue or outcomes were taken to be recorded."""
        if not self.room.is_set() and not self.full():
            self.room.set()
            self.credit_changed.set()

    def hear(self) -> None:
        """The worker spoke: a session held back as stalled may be given work again."""
        self.heard_ms = now_ms()
        self.credit_changed.set()

    def stalled(self, now: int) -> bool:
        """Whether the worker let a lease it holds run out and has said nothing since: it is
        presumed paused or cut off (the lease's task goes back to its queue), so it gets no new
        work, and that task goes to another session, until it speaks again."""
        heard = self.heard_ms
        return any(h.deadline_ms <= now and heard < h.deadline_ms for h in self.assigned.values())

    def ready(self) -> bool:
        """Whether the dispatcher may lease tasks for this session now."""
        return self.credit > 0 and not self.full() and not self.stalled(now_ms())

    def settle(self, outcomes: Iterable[task_pb2.Outcome] = (), started: Iterable[task_pb2.TaskEvent] = ()) -> None:
        self.to_settle.extend(outcomes)
        started = list(started)
        if started:
            if not self.to_record:
                loop = asyncio.get_running_loop()
                self.record_at = loop.time() + STARTED_LINGER
                self._linger = loop.call_later(STARTED_LINGER, self.settle_wake.set)
            self.to_record.extend(started)
        if self.to_settle:
            self.settle_wake.set()

    def take(self) -> tuple[list[task_pb2.Outcome], list[task_pb2.TaskEvent]]:
        """What waits to be recorded, for the settle loop. The events go with it, so the linger's
        timer has nothing left to wake the loop for (one wake-up less per dispatch)."""
        outcomes, started = self.to_settle, self.to_record
        self.to_settle, self.to_record = [], []
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.freed()
        return outcomes, started

    def take_started(self, task_ids: set[str]) -> list[task_pb2.TaskEvent]:
        """The events waiting to be recorded of these tasks, taken out of what waits (their caller
        records them itself, before what it has to say of the tasks)."""
        mine = [e for e in self.to_record if e.task_id in task_ids]
        if mine:
            self.to_record = [e for e in self.to_record if e.task_id not in task_ids]
        return mine

    def due(self) -> bool:
        """Whether there is something to record now: outcomes, or events that waited long enough."""
        if self.to_settle:
            return True
        now = asyncio.get_running_loop().time()
        return bool(self.to_record) and (self.closing or now + TIMER_SLACK >= self.record_at)

    def grant(self, n: int, cap: int | None = None) -> None:
        """More credit from the worker; more than `cap` outstanding is refused (ResourceExhausted)."""
        if n:
            if cap is not None and self.credit + len(self.assigned) + n > cap:
                raise ResourceExhausted(
                    f"credit above the registry's limit of {cap} assignments per session "
                    f"({self.credit} unused and {len(self.assigned)} held, {n} more granted)"
                )
            self.credit += n
            self.credit_changed.set()

    def unsent(self) -> list[Leased]:
        """Once the stream is over: the leases of the assignments still in the outgoing queue. The
        worker never saw them, so the session forgets them, with their started events not yet
        recorded (a task whose events went out already gets a QUEUED event: it waits again)."""
        items: list[Leased] = []
        while not self.out.empty():
            msg = self.out.get_nowait()
            if msg is not None and msg.WhichOneof("kind") == "assignments":
                for a in msg.assignments.assignments:
                    held = self.assigned.get(a.task.id)
                    if held is not None and held.token == a.lease_token:
                        del self.assigned[a.task.id]
                        items.append(held)
        if items:
            ids = {i.task.id for i in items}
            pending = {e.task_id for e in self.to_record if e.task_id in ids}
            self.to_record = [e for e in self.to_record if e.task_id not in ids]
            again = [event(i.task, task_pb2.TASK_STATE_QUEUED) for i in items if i.task.id not in pending]
            self.settle(started=again)
        return items

    def send(self, **kind: object) -> None:
        self.out.put_nowait(worker_pb2.RegistryMessage(**kind))  # type: ignore[arg-type]
