"""Task states as the Python API names them, mapped to the protocol's enum."""

from __future__ import annotations

import enum

from tasktide.v1 import task_pb2


class TaskState(enum.Enum):
    """Where a task is in its life; the last five are final."""

    UNKNOWN = 0
    SCHEDULED = 1
    QUEUED = 2
    RUNNING = 3
    RETRYING = 4
    SUCCEEDED = 5
    FAILED = 6
    CANCELLED = 7
    EXPIRED = 8
    DEAD = 9

    @property
    def is_final(self) -> bool:
        """Whether the task has ended (succeeded, failed, cancelled, expired or dead)."""
        return self in FINAL_STATES

    @classmethod
    def from_proto(cls, value: int) -> TaskState:
        """The state of a protocol TaskState value."""
        return cls(value)

    def to_proto(self) -> int:
        """The protocol's TaskState value."""
        return int(self.value)


FINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.EXPIRED, TaskState.DEAD}
)
FINAL_PROTO_STATES = frozenset(s.value for s in FINAL_STATES)

assert task_pb2.TASK_STATE_DEAD == TaskState.DEAD.value
