"""Handles to submitted tasks."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from tasktide._explain import Explanation
from tasktide._states import TaskState

if TYPE_CHECKING:
    from tasktide._async_client import AsyncClient
    from tasktide._client import Client


class TaskHandle:
    """A submitted task: its id, and ways to ask about it. A pipelined submission's handle learns
    its id when the platform confirms it: reading `id` waits for that, and raises if it was refused."""

    __slots__ = ("_id", "_pending", "name", "_client")

    def __init__(self, task_id: str, client: Client, name: str = "", pending: Future[str] | None = None) -> None:
        self._id = task_id
        self._pending = pending
        self.name = name
        self._client = client

    @property
    def id(self) -> str:
        """The task's id (pipelined: waits for the platform's confirmation; raises its refusal)."""
        if self._pending is not None:
            self._id = self._pending.result()
            self._pending = None
        return self._id

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name} {self.id}>"

    def get(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed with the remote error, TaskTimeout on timeout.

        Args:
            timeout: seconds to wait at most (None: no limit).
        """
        return self._client.result(self.id, timeout)

    def status(self) -> TaskState:
        """The task's state (UNKNOWN for an id the platform does not know)."""
        return self._client.status(self.id)

    def cancel(self) -> TaskState:
        """Cancel: at once when delayed or queued; a running task is signalled and then stopped."""
        return self._client.cancel(self.id)

    def explain(self) -> Explanation:
        """Why the task is not running (yet)."""
        return self._client.explain(self.id)


class AsyncTaskHandle:
    """A task submitted by an AsyncClient: its id, and ways to ask about it, awaited."""

    __slots__ = ("id", "name", "_client")

    def __init__(self, task_id: str, client: AsyncClient, name: str = "") -> None:
        self.id = task_id
        self.name = name
        self._client = client

    def __repr__(self) -> str:
        return f"<AsyncTaskHandle {self.name} {self.id}>"

    async def get(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed with the remote error, TaskTimeout on timeout.

        Args:
            timeout: seconds to wait at most (None: no limit).
        """
        return await self._client.result(self.id, timeout)

    async def status(self) -> TaskState:
        """The task's state."""
        return await self._client.status(self.id)

    async def cancel(self) -> TaskState:
        """Cancel the task (see TaskHandle.cancel)."""
        return await self._client.cancel(self.id)

    async def explain(self) -> Explanation:
        """Why the task is not running (yet)."""
        return await self._client.explain(self.id)
