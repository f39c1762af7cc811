"""What a running task can see of itself: current_task()."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from tasktide._exceptions import TasktideError


class SoftTimeLimitExceeded(TasktideError):
    """Raised inside a task when its soft time limit passes; the task may clean up and return or raise."""


class CancelRequested(TasktideError):
    """Raised inside a task that was cancelled (after `current_task().cancelled` was set)."""


class RetryRequested(TasktideError):
    """Raised by TaskContext.retry(); the worker reports a retry instead of a failure."""

    def __init__(self, countdown: float | None, cause: BaseException | None) -> None:
        super().__init__(f"retry requested (countdown={countdown})")
        self.countdown = countdown
        self.cause = cause


@dataclass
class TaskContext:
    id: str
    name: str
    attempt: int
    queue: str
    delivery: int
    _progress: Callable[[float, str], None] = field(repr=False)
    cancelled: bool = False  # set when a cancel signal arrives; long tasks should check it
    thread_id: int = 0  # the thread running the task (thread pool), for interruptions

    def retry(self, countdown: float | None = None, exc: BaseException | None = None) -> NoReturn:
        """Stop this attempt and ask for another, `countdown` seconds from now (default: backoff)."""
        raise RetryRequested(countdown, exc)

    def raise_if_cancelled(self) -> None:
        """Raise CancelRequested when the task was cancelled: a long task calls it between steps."""
        if self.cancelled:
            raise CancelRequested(f"task {self.id} was cancelled")

    def progress(self, value: float, message: str = "") -> None:
        """Report progress (a number, for example 0..1, and a message) to watchers."""
        self._progress(float(value), message)


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("tasktide_task", default=None)


def current_task() -> TaskContext:
    """The context of the task running in this thread or asyncio task (id, attempt, progress,
    cancellation); raises TasktideError outside a running task."""
    ctx = _current.get()
    if ctx is None:
        raise TasktideError("current_task() called outside a running task")
    return ctx


def set_current(ctx: TaskContext | None) -> contextvars.Token[TaskContext | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[TaskContext | None]) -> None:
    _current.reset(token)
