"""Building a TaskSpec from the options of apply_async/submit (SubmitOptions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from tasktide._codec import payload
from tasktide._exceptions import ConfigurationError
from tasktide.v1 import task_pb2


@dataclass(frozen=True)
class TaskOptions:
    """Defaults a task declares; each call may override them."""

    queue: str = ""
    priority: int = 0
    max_retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    soft_time_limit: float = 0.0
    time_limit: float = 0.0
    rate_limit: str = ""


class SubmitOptions(TypedDict, total=False):
    """Per-call options of `Task.apply_async`, `Client.submit` and `Client.put_schedule`.

    queue: the queue to send the task to (default: the task's, else "default").
    priority: -100..100, higher runs first within a queue.
    countdown: seconds to wait before the task may run.
    eta: when the task may run (an aware datetime, or a Unix time in seconds).
    expires: when the task is dropped unrun (a datetime, or seconds from now).
    idempotency_key: submitting the same key again returns the existing task.
    max_retries: attempts after the first when the task raises a retryable error.
    soft_time_limit: seconds after which the task is asked to stop (SoftTimeLimitExceeded).
    time_limit: seconds after which the task is stopped.
    headers: extra headers carried with the task (trace context travels here).
    """

    queue: str | None
    priority: int | None
    countdown: float | None
    eta: dt.datetime | float | None
    expires: dt.datetime | float | None
    idempotency_key: str | None
    max_retries: int | None
    soft_time_limit: float | None
    time_limit: float | None
    headers: Mapping[str, str] | None


def _ms(value: dt.datetime | float | int) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def build_spec(
    name: str,
    args: Iterable[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    options: TaskOptions | None = None,
    **call: Unpack[SubmitOptions],
) -> task_pb2.TaskSpec:
    """The TaskSpec of task `name` with these arguments: the task's defaults (`options`), overridden
    by the per-call options (see SubmitOptions)."""
    unknown = call.keys() - SubmitOptions.__annotations__.keys()
    if unknown:
        raise ConfigurationError(f"unknown submit option(s): {', '.join(sorted(unknown))}")
    o = options or TaskOptions()
    queue, priority, max_retries = call.get("queue"), call.get("priority"), call.get("max_retries")
    countdown, idempotency_key = call.get("countdown"), call.get("idempotency_key")
    soft_time_limit, time_limit = call.get("soft_time_limit"), call.get("time_limit")
    eta, expires, headers = call.get("eta"), call.get("expires"), call.get("headers")
    spec = task_pb2.TaskSpec(
        name=name,
        queue=queue if queue is not None else o.queue,
        args=payload(list(args) if args is not None else []),
        kwargs=payload(dict(kwargs) if kwargs is not None else {}),
        priority=priority if priority is not None else o.priority,
        countdown=countdown or 0.0,
        idempotency_key=idempotency_key or "",
        soft_time_limit=o.soft_time_limit,
        time_limit=o.time_limit,
        rate_limit=o.rate_limit,
        retry=task_pb2.RetryPolicy(
            max_retries=max_retries if max_retries is not None else o.max_retries,
            backoff_base=o.retry_backoff,
            backoff_max=o.retry_backoff_max,
            jitter=o.retry_jitter,
        ),
    )
    if soft_time_limit is not None:
        spec.soft_time_limit = soft_time_limit
    if time_limit is not None:
        spec.time_limit = time_limit
    if eta is not None:
        spec.eta_ms = _ms(eta)
    if expires is not None:
        # A number for expires is seconds from now, as in Celery.
        spec.expires_ms = (
            _ms(expires)
            if isinstance(expires, dt.datetime)
            else _ms(dt.datetime.now(dt.UTC)) + int(float(expires) * 1000)
        )
    if headers:
        spec.headers.update(headers)
    return spec
