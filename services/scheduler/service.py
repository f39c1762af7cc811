"""The Scheduler gRPC service: accepts tasks and decides when each may run."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import grpc
from redis.asyncio.client import Pipeline

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2, workflow_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import NotFound, ServiceError
from tasktide_services.common.events import event, first_events, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.layout import is_final
from tasktide_services.common.lua import run_pipeline
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler.explain import HELD_BY, explain
from tasktide_services.scheduler.schedules import ScheduleRpcs
from tasktide_services.scheduler.store import SchedulerStore

log = logging.getLogger("tasktide.scheduler")

S = task_pb2


class SchedulerService(ScheduleRpcs):  # schedule RPCs: schedules.py
    def __init__(
        self, store: SchedulerStore, peers: Peers, settings: ServerSettings, hooks: ServiceHooks | None = None
    ) -> None:
        self.store = store
        self.peers = peers
        self.settings = settings
        self.hooks = hooks or ServiceHooks()
        self._handing: set[asyncio.Task[None]] = set()  # hand-overs under way (worker/handover.py)

    async def Submit(
        self, req: scheduler_pb2.SubmitRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitResponse:
        return (await self._submit([req.spec]))[0]

    async def SubmitBatch(
        self, req: scheduler_pb2.SubmitBatchRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SubmitBatchResponse:
        validate.batch_size(len(req.specs), self.settings.limits)
        return scheduler_pb2.SubmitBatchResponse(results=await self._submit(list(req.specs)))

    async def SubmitStream(
        self, requests: AsyncIterator[scheduler_pb2.SubmitStreamRequest], ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[scheduler_pb2.SubmitStreamResponse]:
        """Submissions arriving while the previous ones are written are accepted together, as one
        batch (one Redis round trip); each is answered by its sequence number."""
        inbox: list[scheduler_pb2.SubmitStreamRequest] = []
        arrived = asyncio.Event()

        async def read() -> None:
            try:
                async for req in requests:
                    inbox.append(req)
                    arrived.set()
            finally:
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                while inbox:
                    batch = inbox[: self.settings.limits.max_batch]
                    del inbox[: len(batch)]
                    for resp in await self._submit_answers(batch):
                        yield resp
                if reader.done():
                    reader.result()  # the stream's own failure (a malformed message) ends the call
                    return
        finally:
            reader.cancel()

    async def _submit_answers(
        self, batch: list[scheduler_pb2.SubmitStreamRequest]
    ) -> list[scheduler_pb2.SubmitStreamResponse]:
        """Accept the valid submissions of `batch` together; a refused one gets its own error."""
        answers = [scheduler_pb2.SubmitStreamResponse(seq=r.seq) for r in batch]
        valid: list[int] = []
        for i, r in enumerate(batch):
            try:
                validate.spec(r.spec, self.settings.limits)
                valid.append(i)
            except ServiceError as exc:
                answers[i].error_code, answers[i].error_message = exc.code.value[0], str(exc)
        if not valid:
            return answers
        try:
            results = await self._accept([batch[i].spec for i in valid])
        except Exception as exc:  # noqa: BLE001 - reported to each submitter; the stream goes on
            if not isinstance(exc, ServiceError):
                log.exception("SubmitStream: accepting %d tasks failed", len(valid))
                exc = ServiceError(f"Scheduler.SubmitStream: {type(exc).__name__}: {exc}")
            for i in valid:
                answers[i].error_code, answers[i].error_message = exc.code.value[0], str(exc)
            return answers
        for i, result in zip(valid, results, strict=True):
            answers[i].result.CopyFrom(result)
        return answers

    async def _submit(
        self, specs: list[task_pb2.TaskSpec], ids: list[str] | None = None
    ) -> list[scheduler_pb2.SubmitResponse]:
        """Accept tasks (`ids`: given by the caller, for workflows whose ids are known in advance)."""
        limits = self.settings.limits
        for s in specs:
            validate.spec(s, limits)
        return await self._accept(specs, ids)

    async def _accept(
        self, specs: list[task_pb2.TaskSpec], ids: list[str] | None = None
    ) -> list[scheduler_pb2.SubmitResponse]:
        """`_submit` of specs already validated."""
        now = now_ms()
        ids = ids or [uuid.uuid4().hex for _ in specs]
        tasks = [
            task_pb2.Task(id=tid, spec=s, state=S.TASK_STATE_QUEUED, created_ms=now)
            for tid, s in zip(ids, specs, strict=True)
        ]
        responses = [scheduler_pb2.SubmitResponse(task_id=t.id) for t in tasks]
        keyed = [(i, t) for i, t in enumerate(tasks) if t.spec.idempotency_key]
        existing = await self.store.claim_idempotency([(t.spec.idempotency_key, t.id) for _, t in keyed])
        skip: set[int] = set()
        for (i, _), found in zip(keyed, existing, strict=True):
            if found is not None:
                responses[i].task_id, responses[i].existing = found, True
                skip.add(i)
        fresh = [t for i, t in enumerate(tasks) if i not in skip]
        slots = await self._rate_slots(fresh, now)
        delayed, runnable, events = [], [], []
        for t in fresh:
            s = t.spec
            eta = s.eta_ms or (now + int(s.countdown * 1000) if s.countdown else 0)
            slot = slots.get(t.id, 0)
            if slot > max(eta, now):
                eta = slot
                s.headers[HELD_BY] = "rate_limit"
            s.eta_ms, s.countdown = eta, 0.0
            if eta > now:
                t.state = S.TASK_STATE_SCHEDULED
                delayed.append((t.id, eta))
                events.append(event(t, t.state, now, spec=t.spec))
            else:
                runnable.append(t)
        for i, t in enumerate(tasks):
            if i not in skip:
                responses[i].state = t.state
        # A task that may run now lives only in its ready queue until it is dispatched (the registry
        # then writes its QUEUED event, with its spec); a delayed one has a record and its event now.
        with self.hooks.scheduling(fresh, "submit"):
            await self._write([t for t in fresh if t.state == S.TASK_STATE_SCHEDULED], delayed, runnable, events)
        return responses

    async def _write(
        self,
        fresh: list[task_pb2.Task],
        delayed: list[tuple[str, int]],
        runnable: list[task_pb2.Task],
        events: list[task_pb2.TaskEvent],
    ) -> None:
        """Task records, then events, then the ready queues: in one Redis round trip when the
        results service and the registry live in this process (their stores write their own keys
        with their own scripts), else as calls to them."""
        local = self.peers.local_stores(self.store.redis, "results", "registry")
        if local is None:
            await self.store.save(fresh, delayed)
            await self.hand_over(runnable, events)
            return
        results, registry = local
        # Runnable tasks a local worker session has credit for are leased in this same round trip
        # and sent to it at once (worker/handover.py); the others wait in their queue as usual.
        handover = self.peers.local_servicer("registry").handover(runnable) if runnable else None

        def build(pipe: Pipeline) -> None:
            self.store.build_save(pipe, fresh, delayed)
            results.build_record(pipe, events)
            if handover is not None:
                handover.build(pipe)

        try:
            replies = await run_pipeline(self.store.redis, build, self.store.scripts, results.scripts, registry.scripts)
        except BaseException:
            if handover is not None:
                handover.abandon()
            raise
        if handover is not None:  # sent once the submission is answered: the answer does not wait
            task = asyncio.ensure_future(handover.finish(replies))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    async def _rate_slots(self, tasks: list[task_pb2.Task], now: int) -> dict[str, int]:
        """Start slots for rate-limited tasks: each name's tasks are spaced by its limit."""
        by_name: dict[tuple[str, str], list[task_pb2.Task]] = {}
        for t in tasks:
            if t.spec.rate_limit:
                by_name.setdefault((t.spec.name, t.spec.rate_limit), []).append(t)
        slots: dict[str, int] = {}
        for (name, rate), group in by_name.items():
            interval = validate.rate_interval_ms(rate)
            first = await self.store.rate_slots(name, now, interval, len(group))
            for i, t in enumerate(group):
                slots[t.id] = int(first + i * interval)
        return slots

    async def hand_over(self, runnable: list[task_pb2.Task], events: list[task_pb2.TaskEvent]) -> None:
        """Record the tasks' events, then give the runnable ones to the registry."""
        if events:
            await self.peers.results.Record(results_pb2.RecordRequest(events=events))
        if runnable:
            await self.peers.registry.Enqueue(worker_pb2.EnqueueRequest(tasks=runnable))

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
            revoke = worker_pb2.RevokeRequest(tasks=[task], grace_seconds=self.settings.cancel_grace_seconds)
            (result,) = (await self.peers.registry.Revoke(revoke)).results
            if result == worker_pb2.REVOKE_RESULT_SIGNALLED:
                return scheduler_pb2.CancelResponse(state=S.TASK_STATE_RUNNING)
        events = [*first_events(task), event(task, S.TASK_STATE_CANCELLED, spec=task.spec)]
        await self.peers.results.Record(results_pb2.RecordRequest(events=events))
        if "tasktide-workflow" in task.spec.headers:  # a cancelled step stops its workflow
            done = workflow_pb2.Completion(task_id=task.id, headers=task.spec.headers, state=S.TASK_STATE_CANCELLED)
            await self.peers.workflows.Completed(workflow_pb2.CompletedRequest(completions=[done]))
        return scheduler_pb2.CancelResponse(state=S.TASK_STATE_CANCELLED)

    async def Explain(
        self, req: scheduler_pb2.ExplainRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.Explanation:
        task, res = await self._find(validate.task_id(req.task_id))
        return await explain(task, res, self.store, self.peers)

    async def Retry(
        self, req: scheduler_pb2.RetryRequest, ctx: grpc.aio.ServicerContext
    ) -> scheduler_pb2.RetryResponse:
        task = req.task
        validate.task_id(task.id)
        now = now_ms()
        eta = now + int(max(req.countdown, 0.0) * 1000)
        task.spec.eta_ms, task.spec.countdown = eta, 0.0
        task.spec.headers.pop(HELD_BY, None)
        with self.hooks.scheduling([task], "retry"):
            # Always through the delayed set: the pump hands it to the registry once the registry
            # has forgotten the previous attempt.
            task.state = S.TASK_STATE_SCHEDULED
            await self.store.save([task], [(task.id, eta)])
        return scheduler_pb2.RetryResponse(state=task.state)
