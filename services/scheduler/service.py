"""The Scheduler gRPC service: accepts tasks and decides when each may run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2, workflow_pb2
from tasktide_services.common import tenancy, validate
from tasktide_services.common.auth import current_caller
from tasktide_services.common.errors import NotFound, Unavailable
from tasktide_services.common.events import event, first_events
from tasktide_services.common.layout import WORKFLOW_HEADERS, is_final
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.explain import explain
from tasktide_services.scheduler.schedules import ScheduleRpcs
from tasktide_services.scheduler.store import SchedulerStore
from tasktide_services.scheduler.submissions import SubmissionPool

HANDOVER_WAIT_SECONDS = 5.0  # how long a Cancel waits for a hand-over to the registry to end
HANDOVER_POLL_SECONDS = 0.01

S = task_pb2


class SchedulerService(ScheduleRpcs):  # schedule RPCs: schedules.py
    """The RPCs; every task they take in is admitted by `admission` (admission.py)."""

    def __init__(self, store: SchedulerStore, admission: Admission, peers: Peers, settings: ServerSettings) -> None:
        self.store = store
        self.admission = admission
        self.peers = peers
        self.settings = settings
        self.submissions = SubmissionPool(admission, settings.limits.max_batch, settings.limits.max_message_bytes)

    async def Submit(
        self, req: scheduler_pb2.SubmitRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitResponse:
        return (await self.admission.submit([req.spec], caller=current_caller()))[0]

    async def SubmitBatch(
        self, req: scheduler_pb2.SubmitBatchRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitBatchResponse:
        self.admission.check_batch(len(req.specs))
        return scheduler_pb2.SubmitBatchResponse(
            results=await self.admission.submit(list(req.specs), caller=current_caller())
        )

    def SubmitStream(
        self, requests: AsyncIterator[scheduler_pb2.SubmitStreamRequest], ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[scheduler_pb2.SubmitStreamResponse]:
        """Each submission answered by its sequence number; what arrives, on this stream or any
        other, while earlier submissions are written is accepted together (submissions.py)."""
        return self.submissions.stream(requests, current_caller(), ctx.send_initial_metadata)

    async def _find(self, tid: str) -> tuple[task_pb2.Task, task_pb2.TaskResult]:
        """The task and its latest result, wherever the task is known: its record (delayed and
        retried tasks), its queue (a task not dispatched yet), or the results service.
        The registry is asked before the results service: a task's events are recorded before the
        registry forgets it, so a task that leaves the registry between the two reads is found."""
        (task,) = await self.store.load([tid])
        found = await self.peers.registry.Find(worker_pb2.FindRequest(task_id=tid)) if task is None else None
        (res,) = (await self.peers.results.Get(results_pb2.GetRequest(task_ids=[tid]))).results
        if found is not None and found.found:
            task = found.task
            if not res.found:
                task.state = S.TASK_STATE_QUEUED if found.ready else S.TASK_STATE_RUNNING
        elif task is None and res.found:
            task = task_pb2.Task(id=tid, spec=res.spec, state=res.state, attempt=res.attempt, created_ms=res.created_ms)
        elif task is None:
            raise NotFound(f"no task with id {tid}")
        tenancy.check_owner(current_caller(), task.spec, tid)  # another namespace's task is not found
        if res.found:
            task.state, task.attempt = res.state, res.attempt
        return task, res

    async def GetTask(self, req: scheduler_pb2.GetTaskRequest, ctx: grpc.aio.ServicerContext) -> task_pb2.Task:
        task, _ = await self._find(validate.task_id(req.task_id))
        return task

    async def Cancel(
        self, req: scheduler_pb2.CancelRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.CancelResponse:
        """Delayed and queued tasks are cancelled at once; a running task's worker is signalled
        (cooperative first, hard stop after the grace period) and reports CANCELLED itself."""
        task, res = await self._find(validate.task_id(req.task_id))
        if is_final(task.state):
            return scheduler_pb2.CancelResponse(state=task.state)
        if not await self.store.unschedule(task.id):
            await self._handed_over(task.id)
            revoke = worker_pb2.RevokeRequest(tasks=[task], grace_seconds=self.settings.cancel_grace_seconds)
            (result,) = (await self.peers.registry.Revoke(revoke)).results
            if result == worker_pb2.REVOKE_RESULT_SIGNALLED:
                return scheduler_pb2.CancelResponse(state=S.TASK_STATE_RUNNING)
        events = [*first_events(task), event(task, S.TASK_STATE_CANCELLED, spec=task.spec)]
        await self.peers.results.Record(results_pb2.RecordRequest(events=events))
        if WORKFLOW_HEADERS[0] in task.spec.headers:  # a cancelled step stops its workflow
            done = workflow_pb2.Completion(task_id=task.id, headers=task.spec.headers, state=S.TASK_STATE_CANCELLED)
            await self.peers.workflows.Completed(workflow_pb2.CompletedRequest(completions=[done]))
        return scheduler_pb2.CancelResponse(state=S.TASK_STATE_CANCELLED)

    async def _handed_over(self, task_id: str) -> None:
        """A task being handed to the registry (:moving) is in neither's queue for that moment: the
        Cancel waits until the registry has it (or refused it), so that Revoke finds it there. A
        hand-over that does not end within HANDOVER_WAIT_SECONDS (the registry slow to answer, or a
        scheduler lost midway: its tasks are handed over again after their hand-over deadline)
        fails the Cancel with UNAVAILABLE, to be asked again."""
        deadline = time.monotonic() + HANDOVER_WAIT_SECONDS
        while await self.store.handing_over(task_id):
            if time.monotonic() > deadline:
                raise Unavailable(f"task {task_id} is being handed to the registry; cancel it again in a moment")
            await asyncio.sleep(HANDOVER_POLL_SECONDS)

    async def Explain(
        self, req: scheduler_pb2.ExplainRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.Explanation:
        task, res = await self._find(validate.task_id(req.task_id))
        return await explain(task, res, self.store, self.peers)

    async def Retry(
        self, req: scheduler_pb2.RetryRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.RetryResponse:
        return scheduler_pb2.RetryResponse(state=await self.admission.retry(req.task, req.countdown))
