"""AsyncClient: the asyncio flavour of Client, with the same methods, awaited."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import grpc

from tasktide._client import WAIT_SLICE
from tasktide._direct import AsyncDirectSubmission
from tasktide._errors import translate
from tasktide._exceptions import NotFound, TaskTimeout
from tasktide._explain import Explanation
from tasktide._handle import AsyncTaskHandle
from tasktide._hooks import NO_HOOKS, Hooks
from tasktide._results import unwrap
from tasktide._schedules import AsyncScheduleMethods
from tasktide._settings import ClientSettings
from tasktide._spec import build_spec
from tasktide._states import FINAL_PROTO_STATES, TaskState
from tasktide.v1 import results_pb2, results_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, task_pb2


class AsyncClient(AsyncScheduleMethods):  # schedule methods: _schedules.py
    """asyncio client with the same methods as Client, awaited."""

    def __init__(
        self, address: str | None = None, *, settings: ClientSettings | None = None, hooks: Hooks | None = None
    ) -> None:
        self.settings = settings or ClientSettings.from_env(address=address or "")
        opts = list(self.settings.channel_options)
        chain = list((hooks or NO_HOOKS).aio_client_interceptors()) or None
        self._sched_ch = grpc.aio.insecure_channel(self.settings.scheduler(), options=opts, interceptors=chain)
        res_addr = self.settings.results()
        self._res_ch = (
            self._sched_ch
            if res_addr == self.settings.scheduler()
            else grpc.aio.insecure_channel(res_addr, options=opts, interceptors=chain)
        )
        self._scheduler = scheduler_pb2_grpc.SchedulerStub(self._sched_ch)
        self._results = results_pb2_grpc.ResultsStub(self._res_ch)
        # With the platform's Redis at hand, runnable tasks skip the call to the scheduler (_direct.py).
        url = self.settings.submit_redis_url
        self._direct = AsyncDirectSubmission(url) if url and chain is None else None

    async def close(self) -> None:
        if self._direct is not None:
            await self._direct.close()
        await self._sched_ch.close()
        if self._res_ch is not self._sched_ch:
            await self._res_ch.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self, name: str, args: Iterable[Any] | None = None, kwargs: Any = None, **options: Any
    ) -> AsyncTaskHandle:
        return await self.submit_spec(build_spec(name, args, kwargs, **options))

    async def submit_spec(self, spec: task_pb2.TaskSpec) -> AsyncTaskHandle:
        if self._direct is not None:
            task_id = await self._direct.submit(spec)
            if task_id is not None:
                return AsyncTaskHandle(task_id, self, spec.name)
        try:
            resp = await self._scheduler.Submit(scheduler_pb2.SubmitRequest(spec=spec))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return AsyncTaskHandle(resp.task_id, self, spec.name)

    async def submit_many(self, specs: Sequence[task_pb2.TaskSpec]) -> list[AsyncTaskHandle]:
        try:
            resp = await self._scheduler.SubmitBatch(scheduler_pb2.SubmitBatchRequest(specs=specs))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return [AsyncTaskHandle(r.task_id, self, s.name) for r, s in zip(resp.results, specs, strict=True)]

    async def cancel(self, task_id: str) -> TaskState:
        try:
            resp = await self._scheduler.Cancel(scheduler_pb2.CancelRequest(task_id=task_id))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return TaskState.from_proto(resp.state)

    async def fetch(self, task_ids: Sequence[str]) -> list[task_pb2.TaskResult]:
        try:
            resp = await self._results.Get(results_pb2.GetRequest(task_ids=task_ids))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.results()) from None
        return list(resp.results)

    async def get_task(self, task_id: str) -> task_pb2.Task:
        try:
            return await self._scheduler.GetTask(scheduler_pb2.GetTaskRequest(task_id=task_id))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None

    async def status(self, task_id: str) -> TaskState:
        """The task's state; UNKNOWN for an id the platform does not know."""
        res = (await self.fetch([task_id]))[0]
        if res.found:
            return TaskState.from_proto(res.state)
        try:
            return TaskState.from_proto((await self.get_task(task_id)).state)
        except NotFound:
            return TaskState.UNKNOWN

    async def explain(self, task_id: str) -> Explanation:
        try:
            resp = await self._scheduler.Explain(scheduler_pb2.ExplainRequest(task_id=task_id))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return Explanation.from_proto(resp)

    async def wait(self, task_id: str, timeout: float | None = None) -> task_pb2.TaskResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if left <= 0:
                raise TaskTimeout(task_id, timeout)
            try:
                res = await self._results.Wait(results_pb2.WaitRequest(task_id=task_id, timeout=left), timeout=left + 5)
            except grpc.RpcError as exc:
                raise translate(exc, self.settings.results()) from None
            if res.state in FINAL_PROTO_STATES:
                return res

    async def result(self, task_id: str, timeout: float | None = None) -> Any:
        return unwrap(await self.wait(task_id, timeout))

    async def watch(
        self,
        task_ids: Sequence[str],
        *,
        until_final: bool = True,
        cursors: dict[str, str] | None = None,
        final_only: bool = False,
    ) -> AsyncIterator[task_pb2.TaskEvent]:
        req = results_pb2.WatchRequest(
            task_ids=task_ids, until_final=until_final, cursors=cursors or {}, final_only=final_only
        )
        try:
            async for batch in self._results.WatchBatches(req):
                for ev in batch.events:
                    yield ev
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.results()) from None
