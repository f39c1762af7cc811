"""The Scheduler gRPC service: accepts tasks and decides when each may run."""

from __future__ import annotations

import uuid

import grpc

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import NotFound
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler.store import SchedulerStore

S = task_pb2


class SchedulerService:
    def __init__(self, store: SchedulerStore, peers: Peers, settings: ServerSettings) -> None:
        self.store = store
        self.peers = peers
        self.settings = settings

    async def Submit(
        self, req: scheduler_pb2.SubmitRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitResponse:
        return (await self._submit([req.spec]))[0]

    async def SubmitBatch(
        self, req: scheduler_pb2.SubmitBatchRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitBatchResponse:
        validate.batch_size(len(req.specs), self.settings.limits)
        return scheduler_pb2.SubmitBatchResponse(results=await self._submit(list(req.specs)))

    async def _submit(self, specs: list[task_pb2.TaskSpec]) -> list[scheduler_pb2.SubmitResponse]:
        limits = self.settings.limits
        for s in specs:
            validate.spec(s, limits)
        now = now_ms()
        tasks = [task_pb2.Task(id=uuid.uuid4().hex, spec=s, state=S.TASK_STATE_QUEUED, created_ms=now) for s in specs]
        responses = [scheduler_pb2.SubmitResponse(task_id=t.id) for t in tasks]
        keyed = [(i, t) for i, t in enumerate(tasks) if t.spec.idempotency_key]
        existing = await self.store.claim_idempotency([(t.spec.idempotency_key, t.id) for _, t in keyed])
        skip: set[int] = set()
        for (i, _), found in zip(keyed, existing, strict=True):
            if found is not None:
                responses[i].task_id, responses[i].existing = found, True
                skip.add(i)
        fresh = [t for i, t in enumerate(tasks) if i not in skip]
        delayed, runnable, events = [], [], []
        for t in fresh:
            s = t.spec
            eta = s.eta_ms or (now + int(s.countdown * 1000) if s.countdown else 0)
            s.eta_ms, s.countdown = eta, 0.0
            if eta > now:
                t.state = S.TASK_STATE_SCHEDULED
                delayed.append((t.id, eta))
            else:
                runnable.append(t)
            events.append(event(t, t.state, now))
        for i, t in enumerate(tasks):
            if i not in skip:
                responses[i].state = t.state
        await self.store.save(fresh, delayed)
        await self.hand_over(runnable, events)
        return responses

    async def hand_over(self, runnable: list[task_pb2.Task], events: list[task_pb2.TaskEvent]) -> None:
        """Record the tasks' events, then give the runnable ones to the registry."""
        if events:
            await self.peers.results.Record(results_pb2.RecordRequest(events=events))
        if runnable:
            await self.peers.registry.Enqueue(worker_pb2.EnqueueRequest(tasks=runnable))

    async def GetTask(self, req: scheduler_pb2.GetTaskRequest, ctx: grpc.aio.ServicerContext) -> task_pb2.Task:
        tid = validate.task_id(req.task_id)
        (task,) = await self.store.load([tid])
        if task is None:
            raise NotFound(f"no task with id {tid}")
        res = await self.peers.results.Get(results_pb2.GetRequest(task_ids=[tid]))
        if res.results and res.results[0].found:
            task.state = res.results[0].state
            task.attempt = res.results[0].attempt
        return task

    async def Cancel(
        self, req: scheduler_pb2.CancelRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.CancelResponse:
        tid = validate.task_id(req.task_id)
        (task,) = await self.store.load([tid])
        if task is None:
            raise NotFound(f"no task with id {tid}")
        if await self.store.unschedule(tid):
            await self.peers.results.Record(results_pb2.RecordRequest(events=[event(task, S.TASK_STATE_CANCELLED)]))
            return scheduler_pb2.CancelResponse(state=S.TASK_STATE_CANCELLED)
        res = await self.peers.results.Get(results_pb2.GetRequest(task_ids=[tid]))
        return scheduler_pb2.CancelResponse(state=res.results[0].state)

    async def Retry(
        self, req: scheduler_pb2.RetryRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.RetryResponse:
        task = req.task
        validate.task_id(task.id)
        now = now_ms()
        eta = now + int(max(req.countdown, 0.0) * 1000)
        task.spec.eta_ms = eta
        if eta > now:
            task.state = S.TASK_STATE_SCHEDULED
            await self.store.save([task], [(task.id, eta)])
        else:
            task.state = S.TASK_STATE_QUEUED
            await self.store.save([task], [])
            await self.peers.registry.Enqueue(worker_pb2.EnqueueRequest(tasks=[task]))
        return scheduler_pb2.RetryResponse(state=task.state)
