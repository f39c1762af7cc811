"""The Registry gRPC service: ready queues in, assignments out over each worker's Session stream."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import grpc

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import InvalidArgument
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.notify import Notifier, wait_any
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker.outcomes import OutcomeHandler
from tasktide_services.worker.store import RegistryStore

log = logging.getLogger("tasktide.registry")

IDLE_POLL = 1.0  # a safety net under pub/sub wake-ups
MAX_ASSIGN = 256


class _Session:
    def __init__(self, session_id: str, hello: worker_pb2.Hello) -> None:
        self.id = session_id
        self.hello = hello
        self.queues = list(hello.queues)
        self.credit = 0
        self.credit_changed = asyncio.Event()
        self.out: asyncio.Queue[worker_pb2.RegistryMessage | None] = asyncio.Queue()

    def grant(self, n: int) -> None:
        if n:
            self.credit += n
            self.credit_changed.set()


class RegistryService:
    def __init__(self, store: RegistryStore, notifier: Notifier, peers: Peers, settings: ServerSettings) -> None:
        self.store = store
        self.notifier = notifier
        self.peers = peers
        self.settings = settings
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.outcomes = OutcomeHandler(store, peers, self.lease_ms)

    async def Enqueue(
        self, req: worker_pb2.EnqueueRequest, ctx: grpc.aio.ServicerContext
    ) -> worker_pb2.EnqueueResponse:
        validate.batch_size(len(req.tasks), self.settings.limits)
        for t in req.tasks:
            validate.task_id(t.id)
            validate.spec(t.spec, self.settings.limits)
        return worker_pb2.EnqueueResponse(enqueued=await self.store.enqueue(list(req.tasks)))

    async def ListWorkers(
        self, req: worker_pb2.ListWorkersRequest, ctx: grpc.aio.ServicerContext
    ) -> worker_pb2.ListWorkersResponse:
        return worker_pb2.ListWorkersResponse(workers=await self.store.workers())

    async def QueueStats(
        self, req: worker_pb2.QueueStatsRequest, ctx: grpc.aio.ServicerContext
    ) -> worker_pb2.QueueStatsResponse:
        return worker_pb2.QueueStatsResponse(queues=await self.store.stats())

    async def Session(
        self, requests: AsyncIterator[worker_pb2.WorkerMessage], ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.RegistryMessage]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("kind") != "hello":
            raise InvalidArgument("a session starts with a hello message")
        hello = first.hello
        if not hello.queues:
            hello.queues.append(validate.DEFAULT_QUEUE)
        for q in hello.queues:
            validate.queue_name(q, self.settings.limits)
        session = _Session(uuid.uuid4().hex, hello)
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
        )
        await self.store.put_worker(info)
        yield worker_pb2.RegistryMessage(
            welcome=worker_pb2.Welcome(session_id=session.id, lease_seconds=self.settings.lease_seconds)
        )
        reader = asyncio.create_task(self._read(session, requests))
        dispatcher = asyncio.create_task(self._dispatch(session))
        try:
            while True:
                msg = await session.out.get()
                if msg is None:
                    break
                yield msg
        finally:
            dispatcher.cancel()
            reader.cancel()
            await asyncio.gather(dispatcher, reader, return_exceptions=True)
            await self.store.drop_worker(session.id)
            log.info("session %s of worker %s ended", session.id, hello.worker_id)

    async def _read(self, session: _Session, requests: AsyncIterator[worker_pb2.WorkerMessage]) -> None:
        try:
            async for msg in requests:
                kind = msg.WhichOneof("kind")
                if kind == "credit":
                    session.grant(msg.credit)
                elif kind == "outcomes":
                    for rejected in await self.outcomes.handle(list(msg.outcomes.outcomes)):
                        session.out.put_nowait(worker_pb2.RegistryMessage(rejected=rejected))
                    session.grant(msg.outcomes.credit)
                elif kind == "heartbeat":
                    stale = await self.store.extend(list(msg.heartbeat.leases), now_ms() + self.lease_ms)
                    for ref in msg.heartbeat.leases:
                        if ref.task_id in stale:
                            session.out.put_nowait(
                                worker_pb2.RegistryMessage(
                                    rejected=worker_pb2.LeaseRejected(lease=ref, reason="lease expired")
                                )
                            )
                elif kind == "release":
                    await self.store.release(list(msg.release.leases))
                elif kind == "progress":
                    await self.outcomes.progress(msg.progress)
        except Exception:  # noqa: BLE001 - the stream is gone or broken; leases will expire
            log.exception("session %s reader failed", session.id)
        finally:
            session.out.put_nowait(None)

    async def _dispatch(self, session: _Session) -> None:
        while True:
            while session.credit <= 0:
                session.credit_changed.clear()
                await session.credit_changed.wait()
            wake = [self.notifier.event(q) for q in session.queues]
            leased: list[task_pb2.Task] = []
            assignments = []
            for q in session.queues:
                want = min(session.credit - len(assignments), MAX_ASSIGN)
                if want <= 0:
                    break
                for item in await self.store.dispatch(q, now_ms(), self.lease_ms, want):
                    item.task.state = task_pb2.TASK_STATE_RUNNING
                    assignments.append(
                        worker_pb2.Assignment(
                            task=item.task,
                            lease_token=item.token,
                            deadline_ms=now_ms() + self.lease_ms,
                            delivery=item.delivery,
                        )
                    )
                    leased.append(item.task)
            if not assignments:
                await wait_any(wake, IDLE_POLL)
                continue
            session.credit -= len(assignments)
            session.out.put_nowait(
                worker_pb2.RegistryMessage(assignments=worker_pb2.AssignmentBatch(assignments=assignments))
            )
            started = [event(t, task_pb2.TASK_STATE_RUNNING, worker_id=session.hello.worker_id) for t in leased]
            await self.peers.results.Record(results_pb2.RecordRequest(events=started))


async def run_reaper(store: RegistryStore, peers: Peers, settings: ServerSettings) -> None:
    """Expired leases go back to their queue, or to the dead-letter set after max deliveries."""
    while True:
        try:
            for q in await store.queues():
                _, dead = await store.reap(q, now_ms(), settings.max_deliveries)
                if dead:
                    await _record_dead(store, peers, q, dead, settings.max_deliveries)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("lease reaper failed")
        await asyncio.sleep(max(settings.tick_seconds, min(settings.lease_seconds / 10, 1.0)))


async def _record_dead(store: RegistryStore, peers: Peers, queue: str, ids: list[str], max_deliveries: int) -> None:
    events = []
    for tid in ids:
        task = await store.dead_task(queue, tid)
        if task is None:
            continue
        err = task_pb2.TaskError(
            type="tasktide.WorkerLost",
            message=f"the worker running this task was lost {max_deliveries} times; moved to the dead-letter set",
        )
        events.append(event(task, task_pb2.TASK_STATE_DEAD, error=err))
    if events:
        await peers.results.Record(results_pb2.RecordRequest(events=events))


__all__ = ["RegistryService", "run_reaper", "scheduler_pb2"]
