"""Wait time and run time of tasks as ListTasks returns them, and their tallies per group.

The task index keeps, per task, when its latest attempt became runnable (ready_ms) and when it was
handed to a worker (started_ms), where it knows them (0 where not). Wait time is started - ready;
run time, once the attempt ended, is its end (updated_ms) - started. Both are of the latest attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasktide import TaskState
from tasktide.v1 import task_pb2

SUCCEEDED = TaskState.SUCCEEDED.value
FAILED = frozenset({TaskState.FAILED.value, TaskState.DEAD.value})
ENDED = frozenset({SUCCEEDED, *FAILED})
SAMPLES = 10_000  # times kept per tally for its percentiles at most (the first ones)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def wait_ms(r: task_pb2.TaskResult) -> float | None:
    if r.ready_ms and r.started_ms:
        return float(max(r.started_ms - r.ready_ms, 0))
    return None


def run_ms(r: task_pb2.TaskResult) -> float | None:
    if r.started_ms and r.updated_ms and r.state in ENDED:
        return float(max(r.updated_ms - r.started_ms, 0))
    return None


@dataclass
class Tally:
    """Finished tasks (succeeded, failed: FAILED or DEAD), all tasks, and their wait and run times."""

    succeeded: int = 0
    failed: int = 0
    total: int = 0
    waits: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)

    def add(self, r: task_pb2.TaskResult) -> None:
        self.total += 1
        if r.state == SUCCEEDED:
            self.succeeded += 1
        elif r.state in FAILED:
            self.failed += 1
        for values, v in ((self.waits, wait_ms(r)), (self.runs, run_ms(r))):
            if v is not None and len(values) < SAMPLES:
                values.append(v)

    def times(self) -> dict[str, float | None]:
        return {
            "run_p50_ms": percentile(self.runs, 50),
            "run_p95_ms": percentile(self.runs, 95),
            "wait_p50_ms": percentile(self.waits, 50),
            "wait_p95_ms": percentile(self.waits, 95),
        }

    def summary(self) -> dict[str, Any]:
        return {"succeeded": self.succeeded, "failed": self.failed, "total": self.total, **self.times()}
