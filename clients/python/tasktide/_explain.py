"""Explanation: why a task is not running (yet), as the scheduler sees it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tasktide._states import TaskState
from tasktide.v1 import scheduler_pb2


@dataclass(frozen=True)
class Explanation:
    task_id: str
    state: TaskState
    reason: str  # ETA, RETRY_BACKOFF, RATE_LIMIT, NO_WORKER, QUEUE_PAUSED, QUEUED_BEHIND, RUNNING, FINISHED
    message: str
    eta: dt.datetime | None = None
    ahead: int = 0
    cancel_asked: bool = False  # a Cancel was asked and has not ended the task yet

    @classmethod
    def from_proto(cls, e: scheduler_pb2.Explanation) -> Explanation:
        """The Explanation the scheduler sent."""
        reason = scheduler_pb2.WaitReason.Name(e.reason).removeprefix("WAIT_REASON_")
        eta = dt.datetime.fromtimestamp(e.eta_ms / 1000, dt.UTC) if e.eta_ms else None
        return cls(e.task_id, TaskState.from_proto(e.state), reason, e.message, eta, e.ahead, e.cancel_asked)

    def __str__(self) -> str:
        return f"{self.state.name}: {self.message}"


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    name: str
    queue: str
    attempt: int
    dead_at: dt.datetime
