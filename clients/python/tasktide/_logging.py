"""Log records that carry the trace id and the task id.

`LogContext` is a logging.Filter that adds to every record it sees:
    trace_id, span_id   hex ids of the current trace context (from the hooks; empty without tracing)
    task_id             the task being run (inside a task) or handled (set with `task_scope`)
    context             " [trace_id=... task_id=...]" with the non-empty ones, or "" (for formats)

Install it on handlers, so records of every logger get the fields:
`install_log_context(hooks)`; then a format such as "%(levelname)s %(name)s%(context)s: %(message)s".
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from tasktide._hooks import Hooks
from tasktide.worker._context import _current

_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("tasktide_log_task_id", default="")

FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


@contextlib.contextmanager
def task_scope(task_id: str) -> Iterator[None]:
    """Log records made inside the block carry `task_id`."""
    token = _task_id.set(task_id)
    try:
        yield
    finally:
        _task_id.reset(token)


def current_log_task_id() -> str:
    running = _current.get()
    return running.id if running is not None else _task_id.get()


class LogContext(logging.Filter):
    def __init__(self, hooks: Hooks) -> None:
        super().__init__()
        self.hooks = hooks

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id, span_id = self.hooks.log_ids()
        task_id = current_log_task_id()
        record.trace_id, record.span_id, record.task_id = trace_id, span_id, task_id
        parts = []
        if trace_id:
            parts.append(f"trace_id={trace_id} span_id={span_id}")
        if task_id:
            parts.append(f"task_id={task_id}")
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return True


def install_log_context(hooks: Hooks, handlers: list[logging.Handler] | None = None) -> LogContext:
    """Add a LogContext filter to `handlers` (default: the root logger's handlers)."""
    flt = LogContext(hooks)
    for h in logging.getLogger().handlers if handlers is None else handlers:
        h.addFilter(flt)
    return flt
