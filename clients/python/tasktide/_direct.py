"""Submission straight to the platform's Redis (ClientSettings.submit_redis_url), through the
scheduler's published module (tasktide_services.scheduler.direct), with its errors translated to the
client's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from tasktide._errors import from_status
from tasktide._exceptions import ConfigurationError
from tasktide.v1 import task_pb2


def _module() -> ModuleType:
    try:
        from tasktide_services.scheduler import direct
    except ImportError as exc:
        raise ConfigurationError(
            f"TASKTIDE_SUBMIT_REDIS_URL needs the tasktide-server package installed beside the client ({exc})"
        ) from None
    return direct


@contextmanager
def _translated() -> Iterator[None]:
    from tasktide_services.common.errors import ServiceError

    try:
        yield
    except ServiceError as exc:
        raise from_status(exc.code.value[0], str(exc)) from None


class DirectSubmission:
    """For Client."""

    def __init__(self, redis_url: str) -> None:
        self._submitter = _module().DirectSubmitter.from_url(redis_url)

    def submit(self, spec: task_pb2.TaskSpec) -> str | None:
        """The task's id once queued; None: the task goes to the scheduler."""
        with _translated():
            task_id: str | None = self._submitter.submit(spec)
        return task_id

    def close(self) -> None:
        self._submitter.close()


class AsyncDirectSubmission:
    """For AsyncClient."""

    def __init__(self, redis_url: str) -> None:
        self._submitter = _module().AsyncDirectSubmitter.from_url(redis_url)

    async def submit(self, spec: task_pb2.TaskSpec) -> str | None:
        with _translated():
            task_id: str | None = await self._submitter.submit(spec)
        return task_id

    async def close(self) -> None:
        await self._submitter.close()
