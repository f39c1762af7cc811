"""ServiceHooks: the extension points of the services, for tracing and metrics.

Every method of the base class does nothing, so a server without observability pays a method call
per batch. Implementations (tasktide_services.observability) are built at the entry point from
settings and passed to `server.start`, which hands them to each service. `combine` runs several.

Where the services call them:
    scheduling(tasks, reason)      scheduler: tasks accepted ("submit"), due ("due") or retried ("retry");
                                   a context manager around saving and handing them over
    dispatched(worker_id, items)   registry: assignments leased to a worker, before they are sent
    settling(pairs)                registry: (outcome, task) pairs of valid outcomes; a context manager
                                   around recording them
    dead_lettered(tasks, reason)   registry: tasks moved to the dead-letter set
    redelivered(queue, count)      registry: expired leases put back in their queue
    background(which, redis)       coroutines to run while the server runs (e.g. queue gauges)
"""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any

from redis.asyncio import Redis

from tasktide.v1 import task_pb2, worker_pb2

_NOTHING = contextlib.nullcontext()


class ServiceHooks:
    def server_interceptors(self) -> Sequence[Any]:
        return ()

    def client_interceptors(self) -> Sequence[Any]:
        """grpc.aio client interceptors for the channels between services."""
        return ()

    def scheduling(self, tasks: Sequence[task_pb2.Task], reason: str) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def dispatched(self, worker_id: str, assignments: Sequence[worker_pb2.Assignment]) -> None:
        return None

    def settling(
        self, pairs: Sequence[tuple[task_pb2.Outcome, task_pb2.Task]]
    ) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def dead_lettered(self, tasks: Sequence[task_pb2.Task], reason: str) -> None:
        return None

    def redelivered(self, queue: str, count: int) -> None:
        return None

    def background(self, which: Sequence[str], redis: Redis) -> list[Coroutine[Any, Any, None]]:
        return []

    def log_ids(self) -> tuple[str, str]:
        """(trace id, span id) of the current context as hex, or empty strings."""
        return "", ""


class _Combined(ServiceHooks):
    def __init__(self, parts: Sequence[ServiceHooks]) -> None:
        self.parts = list(parts)

    def server_interceptors(self) -> Sequence[Any]:
        return [i for p in self.parts for i in p.server_interceptors()]

    def client_interceptors(self) -> Sequence[Any]:
        return [i for p in self.parts for i in p.client_interceptors()]

    @contextlib.contextmanager
    def scheduling(self, tasks: Sequence[task_pb2.Task], reason: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for p in self.parts:
                stack.enter_context(p.scheduling(tasks, reason))
            yield

    def dispatched(self, worker_id: str, assignments: Sequence[worker_pb2.Assignment]) -> None:
        for p in self.parts:
            p.dispatched(worker_id, assignments)

    @contextlib.contextmanager
    def settling(self, pairs: Sequence[tuple[task_pb2.Outcome, task_pb2.Task]]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for p in self.parts:
                stack.enter_context(p.settling(pairs))
            yield

    def dead_lettered(self, tasks: Sequence[task_pb2.Task], reason: str) -> None:
        for p in self.parts:
            p.dead_lettered(tasks, reason)

    def redelivered(self, queue: str, count: int) -> None:
        for p in self.parts:
            p.redelivered(queue, count)

    def background(self, which: Sequence[str], redis: Redis) -> list[Coroutine[Any, Any, None]]:
        return [c for p in self.parts for c in p.background(which, redis)]

    def log_ids(self) -> tuple[str, str]:
        for p in self.parts:
            ids = p.log_ids()
            if ids[0]:
                return ids
        return "", ""


def combine(*parts: ServiceHooks | None) -> ServiceHooks:
    """One ServiceHooks that runs each of `parts` (None entries are skipped)."""
    present = [p for p in parts if p is not None]
    if not present:
        return ServiceHooks()
    if len(present) == 1:
        return present[0]
    return _Combined(present)
