"""Transports: how a client's submissions reach the platform, behind one interface.

A client holds one chain of submitters, built once (see _transports.py):

    [plugin interceptors, e.g. tracing] -> [a registered transport, e.g. "redis"] -> base transport

The base transport is one of: `UnarySubmitter` (a Submit call per task), the blocking client's
`StreamSubmitter` (one long-lived SubmitStream, confirmed or pipelined; _submitter.py), the
AsyncClient's `AsyncStreamSubmitter` (_async_submitter.py). An
interceptor holds `next`, the submitter it wraps, and passes on what it does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol

from tasktide._errors import translated
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2


class Submitter(Protocol):
    """A transport of the blocking Client."""

    def submit(self, spec: task_pb2.TaskSpec) -> str | Future[str]:
        """Send one task. Returns its id, or (pipelined transports) a Future of its id that
        `flush` waits for. Raises the client's ServiceError subclasses on refusal."""
        ...

    def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        """Send tasks together; their ids in the same order."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every submission so far is confirmed; raise the first refusal since the last flush."""
        ...

    def close(self) -> None:
        """Release what the transport holds (after its submissions are confirmed)."""
        ...


class AsyncSubmitter(Protocol):
    """A transport of the AsyncClient."""

    async def submit(self, spec: task_pb2.TaskSpec) -> str:
        """Send one task; its id. Raises the client's ServiceError subclasses on refusal."""
        ...

    async def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        """Send tasks together; their ids in the same order."""
        ...

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every submission so far is confirmed; raise the first refusal since the last flush."""
        ...

    async def close(self) -> None:
        """Release what the transport holds."""
        ...


class SubmitterInterceptor:
    """Base class of an interceptor of the blocking client's submissions: holds `next` and passes
    every call to it. Subclasses override what they wrap."""

    def __init__(self, next: Submitter) -> None:  # noqa: A002 - the chain's usual name
        self.next = next

    def submit(self, spec: task_pb2.TaskSpec) -> str | Future[str]:
        """See Submitter.submit."""
        return self.next.submit(spec)

    def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        """See Submitter.submit_batch."""
        return self.next.submit_batch(specs)

    def flush(self, timeout: float | None = None) -> None:
        """See Submitter.flush."""
        self.next.flush(timeout)

    def close(self) -> None:
        """See Submitter.close."""
        self.next.close()


class AsyncSubmitterInterceptor:
    """SubmitterInterceptor for the AsyncClient."""

    def __init__(self, next: AsyncSubmitter) -> None:  # noqa: A002 - the chain's usual name
        self.next = next

    async def submit(self, spec: task_pb2.TaskSpec) -> str:
        """See AsyncSubmitter.submit."""
        return await self.next.submit(spec)

    async def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        """See AsyncSubmitter.submit_batch."""
        return await self.next.submit_batch(specs)

    async def flush(self, timeout: float | None = None) -> None:
        """See AsyncSubmitter.flush."""
        await self.next.flush(timeout)

    async def close(self) -> None:
        """See AsyncSubmitter.close."""
        await self.next.close()


def batch_request(specs: Sequence[task_pb2.TaskSpec]) -> scheduler_pb2.SubmitBatchRequest:
    return scheduler_pb2.SubmitBatchRequest(specs=specs)


class UnarySubmitter:
    """A Submit call per task, SubmitBatch for a batch."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerStub, address: str) -> None:
        self._stub = stub
        self._address = address

    def submit(self, spec: task_pb2.TaskSpec) -> str:
        with translated(self._address):
            return str(self._stub.Submit(scheduler_pb2.SubmitRequest(spec=spec)).task_id)

    def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        with translated(self._address):
            return [r.task_id for r in self._stub.SubmitBatch(batch_request(specs)).results]

    def flush(self, timeout: float | None = None) -> None:
        return None  # every submission is confirmed before submit returns

    def close(self) -> None:
        return None  # the channel belongs to the client


class AsyncUnarySubmitter:
    """UnarySubmitter for the AsyncClient."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerStub, address: str) -> None:
        self._stub = stub
        self._address = address

    async def submit(self, spec: task_pb2.TaskSpec) -> str:
        with translated(self._address):
            resp = await self._stub.Submit(scheduler_pb2.SubmitRequest(spec=spec))
        return str(resp.task_id)

    async def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        with translated(self._address):
            resp = await self._stub.SubmitBatch(batch_request(specs))
        return [r.task_id for r in resp.results]

    async def flush(self, timeout: float | None = None) -> None:
        return None

    async def close(self) -> None:
        return None
