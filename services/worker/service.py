"""The Registry gRPC service: ready queues in, assignments out over each worker's Session stream."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from tasktide.v1 import results_pb2, task_pb2, worker_pb2
from tasktide_services.common import tenancy, validate
from tasktide_services.common.auth import current_caller
from tasktide_services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.notify import Notifier
from tasktide_services.common.partitions import Partitions, base, check_stored, check_stored_spec
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker import keys
from tasktide_services.worker.cancelled import NEVER_SENT, end_cancelled
from tasktide_services.worker.handover import Handover
from tasktide_services.worker.housekeeping import WORKER_REFRESH_SECONDS
from tasktide_services.worker.outcomes import OutcomeHandler
from tasktide_services.worker.session import SessionLoops
from tasktide_services.worker.session_state import Session
from tasktide_services.worker.store import Leased, RegistryStore

log = logging.getLogger("tasktide.registry")
MAX_WORKER_ID = 256  # characters of a worker id DrainWorker takes

Ctx: TypeAlias = grpc.aio.ServicerContext
# How long an ended session waits for its dispatcher's `dispatch` calls in flight, to give their
# leases back (beyond that, those leases expire).
LEASING_WAIT = 5.0


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        notifier: Notifier,
        peers: Peers,
        settings: ServerSettings,
        hooks: ServiceHooks | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.peers = peers
        self.settings = settings
        hooks = hooks or ServiceHooks()
        lease_ms = int(settings.lease_seconds * 1000)
        self.partitions = Partitions.from_pairs(settings.queue_partitions)
        outcomes = OutcomeHandler(store, peers, lease_ms, hooks)
        self.loops = SessionLoops(
            store,
            notifier,
            peers,
            outcomes,
            lease_ms,
            hooks,
            settings.limits,
            settings.max_session_credit,
            self.partitions,
        )
        self.sessions: dict[str, Session] = {}
        self._ending: set[asyncio.Future[None]] = set()  # sessions' ends under way (`_end`)
        self._turn = 0  # sessions take turns for tasks handed over at submission (handover.py)

    def handover(self, tasks: list[task_pb2.Task]) -> Handover:
        """Runnable tasks submitted in this process, for the submission's own pipeline."""
        return Handover(self, tasks)

    def reserve(self, queue: str, count: int) -> Session | None:
        """A session that consumes `queue` and has `count` credit free, with that credit taken."""
        sessions = list(self.sessions.values())
        now = now_ms()
        for i in range(len(sessions)):
            s = sessions[(self._turn + i) % len(sessions)]
            if s.credit >= count and queue in s.queues and not s.closing and not s.stalled(now):
                self._turn += i + 1
                s.credit -= count
                return s
        return None

    async def hand_over(self, session: Session, reserved: int, leased: list[Leased]) -> None:
        """The leases taken for a reservation go to its session, and the credit left is given back.
        A session that ended meanwhile gives the tasks back to their queue at once."""
        if session.id not in self.sessions:
            if leased:
                await self._release_unsent(leased)
            return
        self.give(session, reserved, await self.loops.drop_expired(leased))

    def give(self, session: Session, reserved: int, runnable: list[Leased]) -> None:
        """`hand_over` once the session is known to be there and the expired tasks are dropped."""
        session.grant(reserved - len(runnable))
        if runnable:
            self.loops.assign(session, runnable)

    async def _give_back(self, session: Session) -> None:
        """The leases of assignments the ended session never sent, and those its dispatcher took
        and had not assigned (its `dispatch` calls in flight awaited up to LEASING_WAIT), go back
        to their queue at once, instead of waiting out their deadline (the `release` script checks
        each token: a task leased again since is left alone). A failed call is logged; those
        leases then expire."""
        if session.leasing:
            done, _ = await asyncio.wait(session.leasing, timeout=LEASING_WAIT)
            for call in done:
                if not call.cancelled() and call.exception() is None:
                    session.taken += call.result()
        unsent = session.unsent() + session.taken
        session.taken = []
        if not unsent:
            return
        try:
            await self._release_unsent(unsent)
        except Exception:  # noqa: BLE001 - see above
            log.warning("session %s: giving back %d unsent leases failed", session.id, len(unsent), exc_info=True)

    async def _release_unsent(self, leased: list[Leased]) -> None:
        """Leases no worker was sent go back to their queue; a task a Cancel was asked for meanwhile
        ends CANCELLED instead (cancelled.py)."""
        kept = {r.task_id for r in (await self.store.release([i.ref() for i in leased])).cancel}
        if kept:
            await end_cancelled(self.store, self.peers, [i for i in leased if i.task.id in kept], NEVER_SENT)

    async def _end(self, session: Session, loops: list[asyncio.Task[None]], settler: asyncio.Task[None]) -> None:
        """After the session's stream: its loops stopped, what was leased for it and never sent
        given back, what its worker reported recorded, its worker entry removed."""
        await asyncio.gather(*loops, return_exceptions=True)
        await self._give_back(session)
        session.closing = True  # record what the worker reported before it left
        session.settle_wake.set()
        await asyncio.gather(settler, return_exceptions=True)
        try:
            await self.store.drop_worker(session.id)
        except Exception:  # noqa: BLE001 - its entry goes stale and the reaper drops it
            log.warning("session %s: removing its worker entry failed", session.id, exc_info=True)
        log.info("session %s of worker %s ended", session.id, session.hello.worker_id)

    async def _keep_entry(self, session: Session, info: worker_pb2.WorkerInfo) -> None:
        """Refresh the session's worker entry while it lasts: housekeeping drops entries that are
        not refreshed (those of a registry replica that died). A drain or a resize asked of the
        session that this replica missed (keys.DRAINING, keys.RESIZING) is sent then."""
        while True:
            await asyncio.sleep(WORKER_REFRESH_SECONDS)
            info.last_seen_ms = now_ms()
            try:
                asked = await self.store.put_worker(info)
                if asked.drain:
                    self._drain(session)
                if asked.concurrency and asked.concurrency != info.concurrency:
                    self._resize(session, asked.concurrency)  # the worker has not reached it yet
            except Exception:  # noqa: BLE001 - tried again at the next refresh
                log.warning("session %s: refreshing its worker entry failed", info.session_id, exc_info=True)

    def on_cancel(self, message: str) -> None:
        """A cancel signal from any replica: forward it to the local session running the task."""
        task_id, _, grace = message.partition("|")
        for s in self.sessions.values():
            held = s.assigned.get(task_id)
            if held is not None and not held.cancel_sent:
                held.cancel_sent = True
                s.send(cancel=worker_pb2.CancelSignal(task_id=task_id, grace_seconds=float(grace or 0)))

    async def Enqueue(self, req: worker_pb2.EnqueueRequest, ctx: Ctx) -> worker_pb2.EnqueueResponse:
        validate.batch_size(len(req.tasks), self.settings.limits)
        for t in req.tasks:
            validate.task_id(t.id)
            check_stored_spec(t.spec, self.settings.limits)
        return worker_pb2.EnqueueResponse(enqueued=await self.store.enqueue(list(req.tasks)))

    async def ListWorkers(self, req: worker_pb2.ListWorkersRequest, ctx: Ctx) -> worker_pb2.ListWorkersResponse:
        caller = current_caller()
        workers = [w for w in await self.store.workers() if all(tenancy.visible(caller, q) for q in w.queues)]
        for w in workers:
            w.queues[:] = [tenancy.shown(caller, q) for q in w.queues]
        return worker_pb2.ListWorkersResponse(workers=workers)

    async def DrainWorker(self, req: worker_pb2.DrainWorkerRequest, ctx: Ctx) -> worker_pb2.DrainWorkerResponse:
        """Every session of the worker that the caller may see (all its queues visible) is sent a
        Drain by the replica it is connected to: the session ids go out on one message of DRAIN."""
        sessions = [w.session_id for w in await self._sessions_of(req.worker_id)]
        await self.store.drain(sessions)
        return worker_pb2.DrainWorkerResponse(sessions=len(sessions))

    async def _sessions_of(self, worker_id: str) -> list[worker_pb2.WorkerInfo]:
        """The worker entries of `worker_id` that the caller may see (all its queues visible);
        NotFound when there is none."""
        if not worker_id or len(worker_id) > MAX_WORKER_ID:
            raise InvalidArgument(f"a worker id is 1..{MAX_WORKER_ID} characters, as ListWorkers gives it")
        caller = current_caller()
        sessions = [
            w
            for w in await self.store.workers()
            if w.worker_id == worker_id and all(tenancy.visible(caller, q) for q in w.queues)
        ]
        if not sessions:
            raise NotFound(f"no worker {worker_id[:80]!r} is connected")
        return sessions

    def on_drain(self, message: str) -> None:
        """A drain from any replica: send it to the sessions named that are connected here."""
        for session_id in message.split():
            s = self.sessions.get(session_id)
            if s is not None:
                self._drain(s)

    async def ResizeWorker(self, req: worker_pb2.ResizeWorkerRequest, ctx: Ctx) -> worker_pb2.ResizeWorkerResponse:
        """Every session of the worker that the caller may see is sent a Resize by the replica it is
        connected to (the sessions and their concurrency go out on one message of RESIZE). A worker
        whose Hello did not say it can be resized is refused."""
        n = validate.concurrency(req.concurrency)
        sessions = await self._sessions_of(req.worker_id)
        resizable = [w.session_id for w in sessions if w.resizable]
        if not resizable:
            language = sessions[0].language or "unknown"
            raise FailedPrecondition(
                f"worker {req.worker_id[:80]!r} ({language}) cannot be resized: restart it with another concurrency"
            )
        await self.store.resize(dict.fromkeys(resizable, n))
        return worker_pb2.ResizeWorkerResponse(sessions=len(resizable))

    def on_resize(self, message: str) -> None:
        """A resize from any replica ("session id=concurrency" ...): send it to the sessions named
        that are connected here."""
        for item in message.split():
            session_id, _, n = item.partition("=")
            s = self.sessions.get(session_id)
            if s is not None and n.isdigit():
                self._resize(s, int(n))

    def _resize(self, session: Session, concurrency: int) -> None:
        """Send the session's worker a Resize to `concurrency`. What was asked is kept
        (keys.RESIZING) and sent again at each refresh while the worker reports another size: a
        worker that could not reach it (a child process that did not start) tries again."""
        worker = session.hello.worker_id
        log.info("session %s of worker %s asked to run %d at a time", session.id, worker, concurrency)
        session.send(resize=worker_pb2.Resize(concurrency=concurrency))

    def _drain(self, session: Session) -> None:
        """Send the session's worker a Drain, once."""
        if not session.drain_sent:
            session.drain_sent = True
            log.info("session %s of worker %s asked to drain", session.id, session.hello.worker_id)
            session.send(drain=worker_pb2.Drain())

    async def QueueStats(self, req: worker_pb2.QueueStatsRequest, ctx: Ctx) -> worker_pb2.QueueStatsResponse:
        caller = current_caller()
        stats = _by_queue([st for st in await self.store.stats() if tenancy.visible(caller, st.queue)])
        consumers = await self._consumers()
        for st in stats:
            st.consumers = consumers.get(st.queue, 0)
            st.queue = tenancy.shown(caller, st.queue)
        return worker_pb2.QueueStatsResponse(queues=stats)

    async def _consumers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for w in await self.store.workers():
            for q in w.queues:
                counts[q] = counts.get(q, 0) + 1
        return counts

    async def Revoke(self, req: worker_pb2.RevokeRequest, ctx: Ctx) -> worker_pb2.RevokeResponse:
        results: list[worker_pb2.RevokeResult] = []
        for t in req.tasks:
            validate.task_id(t.id)
            queue = check_stored(t.spec.queue, self.settings.limits)
            (code,) = await self.store.revoke(queue, [t.id], req.grace_seconds)
            if code == worker_pb2.REVOKE_RESULT_SIGNALLED:
                await self.store.redis.publish(keys.CANCEL, f"{t.id}|{req.grace_seconds}")
            results.append(code)
        return worker_pb2.RevokeResponse(results=results)

    async def PauseQueue(self, req: worker_pb2.PauseQueueRequest, ctx: Ctx) -> worker_pb2.PauseQueueResponse:
        for q in self.partitions.of(self._queue(req.queue)):
            await self.store.set_paused(q, req.paused)
        return worker_pb2.PauseQueueResponse(paused=req.paused)

    async def ListDead(self, req: worker_pb2.ListDeadRequest, ctx: Ctx) -> worker_pb2.ListDeadResponse:
        limit = req.limit or 100
        caller = current_caller()
        queues = (
            self.partitions.of(self._queue(req.queue))
            if req.queue
            else [q for q in await self.store.queues() if tenancy.visible(caller, q)]
        )
        out: list[worker_pb2.DeadTask] = []
        for q in queues:
            out += await self.store.list_dead(q, limit - len(out))
            if len(out) >= limit:
                break
        for d in out:
            d.task.spec.queue = tenancy.shown(caller, d.task.spec.queue)
        return worker_pb2.ListDeadResponse(tasks=out)

    async def RequeueDead(self, req: worker_pb2.RequeueDeadRequest, ctx: Ctx) -> worker_pb2.RequeueDeadResponse:
        queues = self.partitions.of(self._queue(req.queue))
        ids = [validate.task_id(t) for t in req.task_ids]
        dead = {d.task.id: d.task for q in queues for d in await self.store.list_dead(q, 100_000)}
        reopened = [event(dead[t], task_pb2.TASK_STATE_QUEUED, reopen=True) for t in (ids or list(dead)) if t in dead]
        for e in reopened:
            e.attempt = 0
        if reopened:
            await self.peers.results.Record(results_pb2.RecordRequest(events=reopened))
        requeued = 0
        for q in queues:  # each partition its own dead tasks (none: nothing to ask, not "all of them")
            mine = [t for t in (ids or list(dead)) if t in dead and dead[t].spec.queue == q]
            if mine:
                requeued += await self.store.requeue_dead(q, mine)
        return worker_pb2.RequeueDeadResponse(requeued=requeued)

    def _queue(self, given: str) -> str:
        """A queue a caller names, as stored: in the caller's namespace (common/tenancy.py)."""
        caller = current_caller()
        return validate.queue_name(
            tenancy.caller_name(caller, given or validate.DEFAULT_QUEUE, "queue name"), self.settings.limits
        )

    async def Locate(self, req: worker_pb2.LocateRequest, ctx: Ctx) -> worker_pb2.LocateResponse:
        queue = check_stored(req.queue, self.settings.limits)
        loc = await self.store.locate(queue, validate.task_id(req.task_id))
        loc.consumers = (await self._consumers()).get(base(queue), 0)
        return loc

    async def Find(self, req: worker_pb2.FindRequest, ctx: Ctx) -> worker_pb2.FindResponse:
        task, ready = await self.store.find(validate.task_id(req.task_id))
        if task is None:
            return worker_pb2.FindResponse(found=False)
        return worker_pb2.FindResponse(found=True, task=task, ready=ready)

    async def Session(
        self, requests: AsyncIterator[worker_pb2.WorkerMessage], ctx: Ctx
    ) -> AsyncIterator[worker_pb2.RegistryMessage]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("kind") != "hello":
            raise InvalidArgument("a session starts with a hello message")
        hello = first.hello
        if not hello.queues:
            hello.queues.append(validate.DEFAULT_QUEUE)
        caller = current_caller()
        for i, q in enumerate(hello.queues):
            validate.queue_name(q, self.settings.limits)
            if not caller.may_consume(q):
                raise PermissionDenied(f"this worker token may not consume queue {q!r}")
            hello.queues[i] = tenancy.caller_name(caller, q, "queue name")
        session = Session(uuid.uuid4().hex, hello)
        session.queues = self.partitions.expand(hello.queues)
        now = now_ms()
        info = worker_pb2.WorkerInfo(
            worker_id=hello.worker_id,
            session_id=session.id,
            hostname=hello.hostname,
            pid=hello.pid,
            queues=hello.queues,
            concurrency=hello.concurrency,
            connected_ms=now,
            last_seen_ms=now,
            language=hello.language,
            resizable=hello.resizable,
        )
        session.info = info
        await self.store.put_worker(info)
        self.sessions[session.id] = session
        yield worker_pb2.RegistryMessage(
            welcome=worker_pb2.Welcome(session_id=session.id, lease_seconds=self.settings.lease_seconds)
        )
        reader = asyncio.create_task(self.loops.read(session, requests))
        dispatcher = asyncio.create_task(self.loops.dispatch(session))
        settler = asyncio.create_task(self.loops.settle(session))
        keeper = asyncio.create_task(self._keep_entry(session, info))
        try:
            while True:
                msg = await session.out.get()
                session.freed()
                if msg is None:
                    break
                yield msg
            if session.error is not None:
                raise session.error
        finally:
            self.sessions.pop(session.id, None)
            dispatcher.cancel()
            reader.cancel()
            keeper.cancel()
            # gRPC cancels the handler of a call whose worker went away, and may do so again while
            # the session ends: the end runs as a task of its own, to its close.
            ending = asyncio.ensure_future(self._end(session, [dispatcher, reader, keeper], settler))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
            await asyncio.shield(ending)


def _by_queue(stats: list[worker_pb2.QueueStat]) -> list[worker_pb2.QueueStat]:
    """The statistics of a partitioned queue's partitions added up under its name (paused when one
    of them is)."""
    out: dict[str, worker_pb2.QueueStat] = {}
    for st in stats:
        name = base(st.queue)
        total = out.setdefault(name, worker_pb2.QueueStat(queue=name))
        total.ready += st.ready
        total.leased += st.leased
        total.dead += st.dead
        total.paused = total.paused or st.paused
    return list(out.values())
