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
