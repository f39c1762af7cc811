"""Reading tasks from the platform: what was submitted (scheduler) and what came of it (results)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasktide._client import Client
from tasktide._codec import decode_payload
from tasktide._states import TaskState
from tasktide.v1 import task_pb2

TASK_ID = re.compile(r"[0-9a-f]{32}")
_CHUNK = 500


@dataclass
class Snapshot:
    """One task as the platform knows it."""

    task_id: str
    name: str
    queue: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    created_ms: int
    eta_ms: int
    state: TaskState
    attempt: int
    result: Any = None
    error: task_pb2.TaskError | None = None
    updated_ms: int = 0
    worker_id: str = ""
    events: list[task_pb2.TaskEvent] = field(default_factory=list)


def is_task_id(value: str) -> bool:
    return bool(TASK_ID.fullmatch(value))


def read(client: Client, task_id: str, *, with_events: bool = True) -> Snapshot:
    """The task `task_id`; raises tasktide.NotFound when the platform has no such task."""
    task = client.get_task(task_id)
    (res,) = client.fetch([task_id])
    state = TaskState.from_proto(res.state if res.found else task.state)
    spec = task.spec
    snap = Snapshot(
        task_id=task_id,
        name=spec.name,
        queue=spec.queue,
        priority=spec.priority,
        args=decode_payload(spec.args, []),
        kwargs=decode_payload(spec.kwargs, {}),
        created_ms=task.created_ms,
        eta_ms=spec.eta_ms,
        state=state,
        attempt=res.attempt if res.found else task.attempt,
        updated_ms=res.updated_ms,
        worker_id=res.worker_id,
    )
    if res.found and res.HasField("result"):
        snap.result = decode_payload(res.result)
    if res.found and res.HasField("error") and res.error.type:
        snap.error = res.error
    if with_events and state.is_final:
        # The log of a final task is complete, so this stream ends.
        snap.events = list(client.watch([task_id], until_final=True))
    return snap


def states(client: Client, task_ids: Iterable[str]) -> dict[str, TaskState]:
    """Current states of many tasks, in batches; tasks the platform no longer has are left out."""
    ids: Sequence[str] = [t for t in task_ids if is_task_id(t)]
    out: dict[str, TaskState] = {}
    for i in range(0, len(ids), _CHUNK):
        for res in client.fetch(ids[i : i + _CHUNK]):
            if res.found:
                out[res.task_id] = TaskState.from_proto(res.state)
    return out
