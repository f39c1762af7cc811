"""Turning a TaskResult from the platform into a value or a raised TaskFailed."""

from __future__ import annotations

from typing import Any

from tasktide._codec import decode_payload
from tasktide._exceptions import TaskCancelled, TaskDead, TaskExpired, TaskFailed
from tasktide._states import TaskState
from tasktide.v1 import task_pb2

_FAILURES: dict[TaskState, type[TaskFailed]] = {
    TaskState.FAILED: TaskFailed,
    TaskState.CANCELLED: TaskCancelled,
    TaskState.EXPIRED: TaskExpired,
    TaskState.DEAD: TaskDead,
}


def unwrap(result: task_pb2.TaskResult) -> Any:
    """The task's return value, or TaskFailed carrying the remote error."""
    state = TaskState.from_proto(result.state)
    if state is TaskState.SUCCEEDED:
        return decode_payload(result.result)
    cls = _FAILURES.get(state)
    if cls is None:
        raise ValueError(f"task {result.task_id} is not final ({state.name})")
    err = result.error
    raise cls(result.task_id, err.type or state.name, err.message, err.traceback, state.name)
