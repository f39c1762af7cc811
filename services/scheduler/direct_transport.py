"""The client's "redis" transport: submission straight to the platform's Redis (direct.py).

Registered under the entry-point group `tasktide.transports` (root pyproject.toml), so a client
with TASKTIDE_SUBMIT_REDIS_URL finds it when this package is installed beside it, and the client
distribution never imports the server's. A task the scheduler must accept itself (direct.py says
which) goes on over the transport it wraps; the scheduler's errors become the client's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from tasktide import AsyncSubmitter, Submitter, error_from_status
from tasktide.v1 import task_pb2
from tasktide_services.common.errors import ServiceError
from tasktide_services.scheduler.direct import AsyncDirectSubmitter, DirectSubmitter


@contextmanager
def _client_errors() -> Iterator[None]:
    try:
        yield
    except ServiceError as exc:
        raise error_from_status(exc.code.value[0], str(exc)) from None


class DirectTransport:
    """For the blocking Client: runnable tasks into Redis, the others to `fallback`."""

    def __init__(self, direct: DirectSubmitter, fallback: Submitter) -> None:
        self._direct = direct
        self._fallback = fallback

    def submit(self, spec: task_pb2.TaskSpec) -> str | Future[str]:
        with _client_errors():
            task_id = self._direct.submit(spec)
        return self._fallback.submit(spec) if task_id is None else task_id

    def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        return self._fallback.submit_batch(specs)

    def flush(self, timeout: float | None = None) -> None:
        self._fallback.flush(timeout)

    def close(self) -> None:
        try:
            self._fallback.close()
        finally:
            self._direct.close()


class AsyncDirectTransport:
    """For the AsyncClient."""

    def __init__(self, direct: AsyncDirectSubmitter, fallback: AsyncSubmitter) -> None:
        self._direct = direct
        self._fallback = fallback

    async def submit(self, spec: task_pb2.TaskSpec) -> str:
        with _client_errors():
            task_id = await self._direct.submit(spec)
        return await self._fallback.submit(spec) if task_id is None else task_id

    async def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        return await self._fallback.submit_batch(specs)

    async def flush(self, timeout: float | None = None) -> None:
        await self._fallback.flush(timeout)

    async def close(self) -> None:
        try:
            await self._fallback.close()
        finally:
            await self._direct.close()


class RedisTransport:
    """The entry point (tasktide.TransportPlugin): builds the transport for a Redis URL. The
    scheduler's limits come from the same TASKTIDE_* variables the server reads."""

    def blocking(self, url: str, fallback: Submitter) -> Submitter:
        return DirectTransport(DirectSubmitter.from_url(url), fallback)

    def asyncio(self, url: str, fallback: AsyncSubmitter) -> AsyncSubmitter:
        return AsyncDirectTransport(AsyncDirectSubmitter.from_url(url), fallback)


transport = RedisTransport()
