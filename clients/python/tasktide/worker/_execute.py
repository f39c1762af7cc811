"""Running one task attempt and turning what happened into an Outcome.

The same functions serve the thread pool, the asyncio pool and the child processes of the process
pool, so retries, errors and results look the same whichever pool ran the task.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from tasktide._app import App, Task
from tasktide._codec import decode_payload, encode_json, error_from_exception, now_ms
from tasktide.v1 import task_pb2, worker_pb2
from tasktide.worker._context import (
    CancelRequested,
    RetryRequested,
    SoftTimeLimitExceeded,
    TaskContext,
    reset_current,
    set_current,
)

SUCCESS = task_pb2.OUTCOME_KIND_SUCCESS
FAILURE = task_pb2.OUTCOME_KIND_FAILURE
RETRY = task_pb2.OUTCOME_KIND_RETRY
CANCELLED = task_pb2.OUTCOME_KIND_CANCELLED
TIMEOUT = task_pb2.OUTCOME_KIND_TIMEOUT

ProgressSink = Callable[[worker_pb2.ProgressReport], None]


def backoff(policy: task_pb2.RetryPolicy, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with full jitter if asked."""
    if policy.backoff_base <= 0:
        return 0.0
    delay = min(policy.backoff_base * (2**attempt), policy.backoff_max or float("inf"))
    return random.uniform(0, delay) if policy.jitter else delay


def new_outcome(a: worker_pb2.Assignment, worker_id: str) -> task_pb2.Outcome:
    t = a.task
    return task_pb2.Outcome(
        task_id=t.id,
        queue=t.spec.queue,
        lease_token=a.lease_token,
        attempt=t.attempt,
        started_ms=now_ms(),
        worker_id=worker_id,
    )


def make_context(a: worker_pb2.Assignment, progress: ProgressSink) -> TaskContext:
    t = a.task
    lease = worker_pb2.LeaseRef(task_id=t.id, queue=t.spec.queue, lease_token=a.lease_token)

    def report(value: float, message: str) -> None:
        progress(worker_pb2.ProgressReport(lease=lease, value=value, message=message))

    return TaskContext(t.id, t.spec.name, t.attempt, t.spec.queue, a.delivery, report)


def stopped(a: worker_pb2.Assignment, worker_id: str, kind: int, err_type: str, message: str) -> task_pb2.Outcome:
    """The outcome of an attempt stopped from outside (time limit, cancellation)."""
    out = new_outcome(a, worker_id)
    out.kind = kind  # type: ignore[assignment]
    out.error.type, out.error.message = err_type, message
    out.finished_ms = now_ms()
    return out


def interrupted(a: worker_pb2.Assignment, worker_id: str, soft_limit: bool) -> task_pb2.Outcome:
    """An attempt that ended on its interruption: its soft time limit, or a cancel."""
    if soft_limit:
        return stopped(a, worker_id, TIMEOUT, "tasktide.SoftTimeLimitExceeded", "soft time limit")
    return stopped(a, worker_id, CANCELLED, "tasktide.Cancelled", "the task was cancelled")


def hard_stopped(a: worker_pb2.Assignment, worker_id: str, time_limit: bool) -> task_pb2.Outcome:
    """An attempt stopped from outside: at its hard time limit, or after a cancel's grace period."""
    if time_limit:
        msg = f"hard time limit of {a.task.spec.time_limit} s exceeded"
        return stopped(a, worker_id, TIMEOUT, "tasktide.TimeLimitExceeded", msg)
    return stopped(a, worker_id, CANCELLED, "tasktide.Cancelled", "cancelled; stopped after the grace period")


def not_started(a: worker_pb2.Assignment, worker_id: str) -> task_pb2.Outcome:
    """An assignment cancelled before it started: it never runs."""
    return stopped(a, worker_id, CANCELLED, "tasktide.Cancelled", "cancelled before it started")


def unknown_task(a: worker_pb2.Assignment, out: task_pb2.Outcome) -> task_pb2.Outcome:
    out.kind = FAILURE
    out.error.type = "tasktide.UnknownTask"
    out.error.message = f"no task named {a.task.spec.name!r} is registered on worker {out.worker_id}"
    out.finished_ms = now_ms()
    return out


def decode_args(a: worker_pb2.Assignment) -> tuple[list[Any], dict[str, Any]]:
    return decode_payload(a.task.spec.args, []), decode_payload(a.task.spec.kwargs, {})


def finish(
    t: Task[Any, Any],
    a: worker_pb2.Assignment,
    out: task_pb2.Outcome,
    value: Any = None,
    exc: BaseException | None = None,
) -> task_pb2.Outcome:
    """Fill `out` from a return value or an exception (retry, cancel, soft limit or failure)."""
    if exc is None:
        try:
            out.result.json = encode_json(value)
            out.kind = SUCCESS
        except Exception as enc:  # noqa: BLE001 - a result that is not JSON fails the task
            out.kind = FAILURE
            out.error.CopyFrom(error_from_exception(enc))
    elif isinstance(exc, RetryRequested):
        _retry_or_fail(a, out, exc.cause or exc, exc.countdown, forced=True, policy=retry_policy(t, a))
    elif isinstance(exc, CancelRequested):
        out.kind = CANCELLED
        out.error.CopyFrom(error_from_exception(exc))
    elif isinstance(exc, SoftTimeLimitExceeded):
        out.kind = TIMEOUT
        out.error.CopyFrom(error_from_exception(exc))
    else:
        _retry_or_fail(a, out, exc, None, forced=t.should_retry(exc), policy=retry_policy(t, a))
    out.finished_ms = now_ms()
    return out


def retry_policy(t: Task[Any, Any], a: worker_pb2.Assignment) -> task_pb2.RetryPolicy:
    """The submitted policy when it allows retries; otherwise (a submission by name, from any
    language) the policy the task declares on this worker."""
    spec = a.task.spec.retry
    if spec.max_retries:
        return spec
    o = t.options
    return task_pb2.RetryPolicy(
        max_retries=o.max_retries, backoff_base=o.retry_backoff, backoff_max=o.retry_backoff_max, jitter=o.retry_jitter
    )


def _retry_or_fail(
    a: worker_pb2.Assignment,
    out: task_pb2.Outcome,
    exc: BaseException,
    countdown: float | None,
    forced: bool,
    policy: task_pb2.RetryPolicy,
) -> None:
    out.error.CopyFrom(error_from_exception(exc))
    if forced and a.task.attempt < policy.max_retries:
        out.kind = RETRY
        out.retry_countdown = countdown if countdown is not None else backoff(policy, a.task.attempt)
    else:
        out.kind = FAILURE
        out.retries_exhausted = forced and policy.max_retries > 0


def run_sync(app: App, a: worker_pb2.Assignment, ctx: TaskContext, worker_id: str) -> task_pb2.Outcome:
    """Run a plain-function task in the calling thread (thread pool or child process)."""
    out = new_outcome(a, worker_id)
    t = app.lookup(a.task.spec.name)
    if t is None:
        return unknown_task(a, out)
    ctx.thread_id = threading.get_ident()
    token = set_current(ctx)
    try:
        args, kwargs = decode_args(a)
        if t.is_async:
            import asyncio

            value = asyncio.run(t.fn(*args, **kwargs))
        else:
            value = t.fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - everything the task raises becomes its outcome
        if not isinstance(exc, Exception | CancelRequested | SoftTimeLimitExceeded | RetryRequested):
            raise
        return finish(t, a, out, exc=exc)
    finally:
        ctx.thread_id = 0
        reset_current(token)
    return finish(t, a, out, value)


async def run_async(app: App, a: worker_pb2.Assignment, ctx: TaskContext, worker_id: str) -> task_pb2.Outcome:
    """Run an `async def` task on the worker's event loop."""
    out = new_outcome(a, worker_id)
    t = app.lookup(a.task.spec.name)
    if t is None:
        return unknown_task(a, out)
    token = set_current(ctx)
    try:
        args, kwargs = decode_args(a)
        value = await t.fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        return finish(t, a, out, exc=exc)
    finally:
        reset_current(token)
    return finish(t, a, out, value)
