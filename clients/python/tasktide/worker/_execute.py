"""Running one assignment and turning what happened into an Outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from tasktide._app import App, Task
from tasktide._codec import decode_payload, encode_json, error_from_exception, now_ms
from tasktide.v1 import task_pb2, worker_pb2
from tasktide.worker._context import RetryRequested, TaskContext, reset_current, set_current

SUCCESS = task_pb2.OUTCOME_KIND_SUCCESS
FAILURE = task_pb2.OUTCOME_KIND_FAILURE
RETRY = task_pb2.OUTCOME_KIND_RETRY


def backoff(policy: task_pb2.RetryPolicy, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with full jitter if asked."""
    if policy.backoff_base <= 0:
        return 0.0
    delay = min(policy.backoff_base * (2**attempt), policy.backoff_max or float("inf"))
    return random.uniform(0, delay) if policy.jitter else delay


def _call(ctx: TaskContext, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    token = set_current(ctx)
    try:
        return fn(*args, **kwargs)
    finally:
        reset_current(token)


async def _acall(ctx: TaskContext, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    token = set_current(ctx)
    try:
        return await fn(*args, **kwargs)
    finally:
        reset_current(token)


class TaskRunner:
    """Runs assignments of one App on a thread pool (plain functions) or the loop (async def)."""

    def __init__(
        self, app: App, executor: Executor, worker_id: str, progress: Callable[[worker_pb2.ProgressReport], None]
    ) -> None:
        self.app = app
        self.executor = executor
        self.worker_id = worker_id
        self.progress = progress

    def _context(self, a: worker_pb2.Assignment, loop: asyncio.AbstractEventLoop) -> TaskContext:
        task = a.task
        lease = worker_pb2.LeaseRef(task_id=task.id, queue=task.spec.queue, lease_token=a.lease_token)

        def report(value: float, message: str) -> None:
            msg = worker_pb2.ProgressReport(lease=lease, value=value, message=message)
            loop.call_soon_threadsafe(self.progress, msg)

        return TaskContext(task.id, task.spec.name, task.attempt, task.spec.queue, a.delivery, report)

    async def run(self, a: worker_pb2.Assignment) -> task_pb2.Outcome:
        task = a.task
        out = task_pb2.Outcome(
            task_id=task.id,
            queue=task.spec.queue,
            lease_token=a.lease_token,
            attempt=task.attempt,
            started_ms=now_ms(),
            worker_id=self.worker_id,
        )
        t = self.app.lookup(task.spec.name)
        if t is None:
            out.kind = FAILURE
            out.error.type = "tasktide.UnknownTask"
            out.error.message = f"no task named {task.spec.name!r} is registered on worker {self.worker_id}"
        else:
            await self._run_task(t, a, out)
        out.finished_ms = now_ms()
        return out

    async def _run_task(self, t: Task[Any, Any], a: worker_pb2.Assignment, out: task_pb2.Outcome) -> None:
        loop = asyncio.get_running_loop()
        spec = a.task.spec
        ctx = self._context(a, loop)
        try:
            args = decode_payload(spec.args, [])
            kwargs = decode_payload(spec.kwargs, {})
            if t.is_async:
                value = await _acall(ctx, t.fn, args, kwargs)
            else:
                value = await loop.run_in_executor(self.executor, _call, ctx, t.fn, args, kwargs)
            out.result.json = encode_json(value)
            out.kind = SUCCESS
        except RetryRequested as r:
            self._retry_or_fail(a, out, r.cause or r, r.countdown, forced=True)
        except Exception as exc:
            self._retry_or_fail(a, out, exc, None, forced=t.should_retry(exc))

    def _retry_or_fail(
        self, a: worker_pb2.Assignment, out: task_pb2.Outcome, exc: BaseException, countdown: float | None, forced: bool
    ) -> None:
        out.error.CopyFrom(error_from_exception(exc))
        policy = a.task.spec.retry
        if forced and a.task.attempt < policy.max_retries:
            out.kind = RETRY
            out.retry_countdown = countdown if countdown is not None else backoff(policy, a.task.attempt)
        else:
            out.kind = FAILURE
