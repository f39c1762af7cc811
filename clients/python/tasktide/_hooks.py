"""Hooks: the extension points of the client and the worker runtime, for tracing and the like.

Every method of `Hooks` does nothing (or adds nothing), so the core pays close to nothing when no
plugin is installed. A plugin subclasses `Hooks` and is passed explicitly:
`App("shop", hooks=...)`, `Client(hooks=...)`, `Worker(..., hooks=...)`. tasktide never installs
one by itself at import time; `tasktide.contrib.opentelemetry` is the one that ships with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from tasktide._transport import AsyncSubmitter, Submitter
from tasktide.v1 import task_pb2, worker_pb2

OutcomeCallback = Callable[[task_pb2.Outcome], None]


def _ignore(outcome: task_pb2.Outcome) -> None:
    return None


def _ignore_ids(task_ids: Sequence[str]) -> None:
    return None


_NOTHING = contextlib.nullcontext(_ignore)  # reusable: entering it costs next to nothing
_SENT = contextlib.nullcontext(_ignore_ids)
_RESUMED = contextlib.nullcontext()


class Hooks:
    """No-op base class of client and worker hooks."""

    def intercept_submitter(self, next: Submitter) -> Submitter:  # noqa: A002 - the chain's usual name
        """The blocking client's transport, wrapped: return an interceptor holding `next`
        (a SubmitterInterceptor subclass), or `next` itself to leave submissions alone."""
        return next

    def intercept_async_submitter(self, next: AsyncSubmitter) -> AsyncSubmitter:  # noqa: A002
        """The AsyncClient's transport, wrapped (an AsyncSubmitterInterceptor), or `next` itself."""
        return next

    def sending(
        self, specs: Sequence[task_pb2.TaskSpec]
    ) -> contextlib.AbstractContextManager[Callable[[Sequence[str]], None]]:
        """Wraps sending `specs` another way than the transport (a workflow, whole): the plugin may
        write into their headers (they are the request's own); the block calls the value it was given
        with the tasks' ids once they are known."""
        return _SENT

    def wrap_channel(self, channel: Any) -> Any:
        """The blocking client's grpc.Channel, with interceptors in front of it if the plugin has any."""
        return channel

    def aio_client_interceptors(self) -> Sequence[Any]:
        """Interceptors for AsyncClient's grpc.aio channels."""
        return ()

    def process(
        self, assignment: worker_pb2.Assignment, worker_id: str
    ) -> contextlib.AbstractContextManager[OutcomeCallback]:
        """Wraps one attempt of a task on a worker. The block runs the task; it calls the value it
        was given with the attempt's Outcome before it ends."""
        return _NOTHING

    def resume(self, assignment: worker_pb2.Assignment) -> contextlib.AbstractContextManager[None]:
        """Wraps running an attempt in another process (the process pool's child): the block runs in
        the context the parent's `process` left in the assignment (no new span)."""
        return _RESUMED

    def log_ids(self) -> tuple[str, str]:
        """(trace id, span id) of the current context as hex, or empty strings; used by log records."""
        return "", ""


NO_HOOKS = Hooks()

# The plugin of Apps and Clients made without hooks of their own: none, unless an instrumentor sets
# one (tasktide.contrib.opentelemetry.instrumentation, which `opentelemetry-instrument` runs).
_default: Callable[[], Hooks] | None = None


def set_default_hooks(factory: Callable[[], Hooks] | None) -> None:
    """Give Apps and Clients made from now on without `hooks=` the plugin `factory()` (None: none)."""
    global _default
    _default = factory


def default_hooks() -> Hooks:
    """The plugin for an App or Client made without `hooks=`."""
    return _default() if _default is not None else NO_HOOKS
