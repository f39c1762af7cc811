"""Building the TaskEvents that services record with the results service."""

from __future__ import annotations

import time

from tasktide.v1 import task_pb2


def now_ms() -> int:
    return int(time.time() * 1000)


def event(task: task_pb2.Task, state: int, at_ms: int = 0, **fields: object) -> task_pb2.TaskEvent:
    return task_pb2.TaskEvent(
        task_id=task.id,
        state=state,  # type: ignore[arg-type]
        at_ms=at_ms or now_ms(),
        attempt=task.attempt,
        name=task.spec.name,
        queue=task.spec.queue,
        **fields,  # type: ignore[arg-type]
    )


def first_events(task: task_pb2.Task) -> list[task_pb2.TaskEvent]:
    """The QUEUED event of a task submitted to run at once, which the scheduler leaves to the
    registry: written when the task first leaves its queue (dispatched, expired), stamped with the
    time it was submitted and carrying its spec. Tasks that waited in the delayed set, retries and
    requeued dead tasks have had their events written already."""
    if task.attempt or task.spec.eta_ms or task.state != task_pb2.TASK_STATE_QUEUED:
        return []
    return [event(task, task_pb2.TASK_STATE_QUEUED, task.created_ms or now_ms(), spec=task.spec)]
