"""Client: submits tasks by name and reads their results, blocking (AsyncClient: _async_client.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc

from tasktide._direct import DirectSubmission
from tasktide._errors import translate
from tasktide._exceptions import NotFound, TaskTimeout
from tasktide._explain import DeadLetter, Explanation
from tasktide._handle import TaskHandle
from tasktide._hooks import NO_HOOKS, Hooks
from tasktide._results import unwrap
from tasktide._schedules import ScheduleMethods
from tasktide._settings import ClientSettings
from tasktide._spec import build_spec
from tasktide._states import FINAL_PROTO_STATES, TaskState
from tasktide._submitter import StreamSubmitter
from tasktide.v1 import (
    results_pb2,
    results_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    task_pb2,
    worker_pb2,
    worker_pb2_grpc,
)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


# The server holds one Wait call at most this long; the client loops for longer timeouts.
WAIT_SLICE = 30.0


class Client(ScheduleMethods):  # schedule methods: _schedules.py
    """Blocking client. Thread-safe; keep one per process. `hooks`: a plugin such as tracing."""

    def __init__(
        self, address: str | None = None, *, settings: ClientSettings | None = None, hooks: Hooks | None = None
    ) -> None:
        self.settings = settings or ClientSettings.from_env(address=address or "")
        wrap = (hooks or NO_HOOKS).wrap_channel
        opts = list(self.settings.channel_options)
        self._sched_ch = grpc.insecure_channel(self.settings.scheduler(), options=opts)
        res_addr = self.settings.results()
        self._res_ch = (
            self._sched_ch if res_addr == self.settings.scheduler() else grpc.insecure_channel(res_addr, options=opts)
        )
        reg_addr = self.settings.registry()
        self._reg_ch = (
            self._sched_ch if reg_addr == self.settings.scheduler() else grpc.insecure_channel(reg_addr, options=opts)
        )
        self._scheduler = scheduler_pb2_grpc.SchedulerStub(wrap(self._sched_ch))
        self._results = results_pb2_grpc.ResultsStub(wrap(self._res_ch))
        self._registry = worker_pb2_grpc.RegistryStub(wrap(self._reg_ch))
        # Tasks sent one at a time share one stream (cheaper than a call each), unless a plugin
        # wraps each Submit call.
        plain = hooks is None or not hooks.wraps_submit
        self._submitter = StreamSubmitter(self._scheduler, self.settings.scheduler()) if plain else None
        # With the platform's Redis at hand, runnable tasks skip the call to the scheduler (_direct.py).
        url = self.settings.submit_redis_url
        self._direct = DirectSubmission(url) if plain and url else None

    @property
    def scheduler_channel(self) -> grpc.Channel:
        """The channel to the scheduler (which also hosts workflows)."""
        return self._sched_ch

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every task submitted so far is confirmed by the platform; raises the first
        refusal since the last flush. Only pipelined submission (settings) leaves any unconfirmed."""
        if self._submitter is not None:
            self._submitter.flush(timeout)

    def close(self) -> None:
        """Closes the connections, after waiting for unconfirmed submissions (see flush)."""
        if self._submitter is not None:
            try:
                self._submitter.flush()
            finally:
                self._submitter.close()
        if self._direct is not None:
            self._direct.close()
        for ch in {id(c): c for c in (self._sched_ch, self._res_ch, self._reg_ch)}.values():
            ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, name: str, args: Iterable[Any] | None = None, kwargs: Any = None, **options: Any) -> TaskHandle:
        return self.submit_spec(build_spec(name, args, kwargs, **options))

    def submit_spec(self, spec: task_pb2.TaskSpec) -> TaskHandle:
        if self._direct is not None:
            task_id = self._direct.submit(spec)
            if task_id is not None:
                return TaskHandle(task_id, self, spec.name)
        if self._submitter is not None:
            pipelined = self.settings.pipelined_submit
            fut = self._submitter.submit(spec, pipelined)
            if pipelined:
                return TaskHandle("", self, spec.name, pending=fut)
            return TaskHandle(fut.result().task_id, self, spec.name)
        try:
            resp = self._scheduler.Submit(scheduler_pb2.SubmitRequest(spec=spec))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return TaskHandle(resp.task_id, self, spec.name)

    def submit_many(self, specs: Sequence[task_pb2.TaskSpec]) -> list[TaskHandle]:
        try:
            resp = self._scheduler.SubmitBatch(scheduler_pb2.SubmitBatchRequest(specs=specs))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return [TaskHandle(r.task_id, self, s.name) for r, s in zip(resp.results, specs, strict=True)]

    def get_task(self, task_id: str) -> task_pb2.Task:
        try:
            return self._scheduler.GetTask(scheduler_pb2.GetTaskRequest(task_id=task_id))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None

    def cancel(self, task_id: str) -> TaskState:
        try:
            resp = self._scheduler.Cancel(scheduler_pb2.CancelRequest(task_id=task_id))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
        return TaskState.from_proto(resp.state)

    def fetch(self, task_ids: Sequence[str]) -> list[task_pb2.TaskResult]:
        try:
            return list(self._results.Get(results_pb2.GetRequest(task_ids=task_ids)).results)
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.results()) from None

    def explain(self, task_id: str) -> Explanation:
        """Why the task is not running (yet): ETA, backoff, rate limit, no worker, paused queue..."""
        try:
            return Explanation.from_proto(self._scheduler.Explain(scheduler_pb2.ExplainRequest(task_id=task_id)))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None

    def pause_queue(self, queue: str, paused: bool = True) -> None:
        try:
            self._registry.PauseQueue(worker_pb2.PauseQueueRequest(queue=queue, paused=paused))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.registry()) from None

    def resume_queue(self, queue: str) -> None:
        self.pause_queue(queue, paused=False)

    def queue_stats(self) -> list[worker_pb2.QueueStat]:
        try:
            return list(self._registry.QueueStats(worker_pb2.QueueStatsRequest()).queues)
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.registry()) from None

    def workers(self) -> list[worker_pb2.WorkerInfo]:
        try:
            return list(self._registry.ListWorkers(worker_pb2.ListWorkersRequest()).workers)
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.registry()) from None

    def dead_letters(self, queue: str = "", limit: int = 100) -> list[DeadLetter]:
        try:
            resp = self._registry.ListDead(worker_pb2.ListDeadRequest(queue=queue, limit=limit))
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.registry()) from None
        return [
            DeadLetter(d.task.id, d.task.spec.name, d.task.spec.queue, d.task.attempt, _utc(d.dead_ms))
            for d in resp.tasks
        ]

    def requeue_dead(self, queue: str = "default", task_ids: Sequence[str] = ()) -> int:
        """Put dead tasks back in their queue as first attempts; all of the queue's when no ids are given."""
        try:
            req = worker_pb2.RequeueDeadRequest(queue=queue, task_ids=list(task_ids))
            return int(self._registry.RequeueDead(req).requeued)
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.registry()) from None

    def status(self, task_id: str) -> TaskState:
        """The task's state; UNKNOWN for an id the platform does not know."""
        res = self.fetch([task_id])[0]
        if res.found:
            return TaskState.from_proto(res.state)
        try:  # not dispatched yet: its queue knows it
            return TaskState.from_proto(self.get_task(task_id).state)
        except NotFound:
            return TaskState.UNKNOWN

    def wait(self, task_id: str, timeout: float | None = None) -> task_pb2.TaskResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if left <= 0:
                raise TaskTimeout(task_id, timeout)
            try:
                res = self._results.Wait(results_pb2.WaitRequest(task_id=task_id, timeout=left), timeout=left + 5)
            except grpc.RpcError as exc:
                raise translate(exc, self.settings.results()) from None
            if res.state in FINAL_PROTO_STATES:
                return res

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        return unwrap(self.wait(task_id, timeout))

    def watch(
        self,
        task_ids: Sequence[str],
        *,
        until_final: bool = True,
        cursors: dict[str, str] | None = None,
        final_only: bool = False,
    ) -> Iterator[task_pb2.TaskEvent]:
        req = results_pb2.WatchRequest(
            task_ids=task_ids, until_final=until_final, cursors=cursors or {}, final_only=final_only
        )
        try:
            for batch in self._results.WatchBatches(req):
                yield from batch.events
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.results()) from None
