"""Turning platform snapshots into the tasks framework's TaskResult."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tasktide._states import TaskState
from tasktide.contrib.django.compat import Task, TaskError, TaskResult, TaskResultStatus
from tasktide.contrib.django.platform import Snapshot
from tasktide.v1 import task_pb2

STATUS = {
    TaskState.UNKNOWN: TaskResultStatus.READY,
    TaskState.SCHEDULED: TaskResultStatus.READY,
    TaskState.QUEUED: TaskResultStatus.READY,
    TaskState.RETRYING: TaskResultStatus.READY,
    TaskState.RUNNING: TaskResultStatus.RUNNING,
    TaskState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    TaskState.FAILED: TaskResultStatus.FAILED,
    TaskState.CANCELLED: TaskResultStatus.FAILED,
    TaskState.EXPIRED: TaskResultStatus.FAILED,
    TaskState.DEAD: TaskResultStatus.FAILED,
}

# A task that ended without an exception of its own is reported with the tasktide error for that end.
_END_ERRORS = {
    TaskState.CANCELLED: "tasktide.TaskCancelled",
    TaskState.EXPIRED: "tasktide.TaskExpired",
    TaskState.DEAD: "tasktide.TaskDead",
}


def when(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) if ms else None


def new_result(task: Task, result_id: str, args: Any, kwargs: Any, backend: str) -> TaskResult:
    """A just-enqueued result. Raises TypeError/ValueError for arguments that are not JSON data."""
    return TaskResult(
        task=task,
        id=result_id,
        status=TaskResultStatus.READY,
        enqueued_at=dt.datetime.now(dt.UTC),
        started_at=None,
        finished_at=None,
        last_attempted_at=None,
        args=list(args),
        kwargs=dict(kwargs),
        backend=backend,
        errors=[],
        worker_ids=[],
    )


def _error(err: task_pb2.TaskError) -> TaskError:
    # Errors of builtin exceptions carry the bare name ("ValueError"); the framework wants a path.
    path = err.type if "." in err.type else f"builtins.{err.type}"
    return TaskError(exception_class_path=path, traceback=err.traceback or f"{err.type}: {err.message}")


def from_snapshot(task: Task, result_id: str, snap: Snapshot, backend: str) -> TaskResult:
    runs = [e for e in snap.events if e.state == task_pb2.TASK_STATE_RUNNING and not e.progress_only]
    errors = [_error(e.error) for e in snap.events if e.HasField("error") and e.error.type and not e.progress_only]
    if not snap.events and snap.error is not None:
        errors.append(_error(snap.error))
    if snap.state in _END_ERRORS and not errors:
        errors.append(TaskError(exception_class_path=_END_ERRORS[snap.state], traceback=snap.state.name.lower()))
    worker_ids = [e.worker_id for e in runs]
    if not worker_ids and snap.worker_id:
        worker_ids = [snap.worker_id]
    started = when(runs[0].at_ms) if runs else None
    last = when(runs[-1].at_ms) if runs else None
    if snap.state is TaskState.RUNNING and started is None:
        started = last = when(snap.updated_ms)
    result = TaskResult(
        task=task,
        id=result_id,
        status=STATUS[snap.state],
        enqueued_at=when(snap.created_ms),
        started_at=started,
        finished_at=when(snap.updated_ms) if snap.state.is_final else None,
        last_attempted_at=last,
        args=snap.args,
        kwargs=snap.kwargs,
        backend=backend,
        errors=errors,
        worker_ids=worker_ids,
    )
    if snap.state is TaskState.SUCCEEDED:
        object.__setattr__(result, "_return_value", snap.result)
    return result
