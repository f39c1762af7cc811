"""Plain timelines, folded into the result.

Most tasks live a plain life: queued once, run once by one worker, ended. When a task's whole
timeline is recorded in one `record` call and says nothing its result does not already say, the
result keeps it (keys.py: the time the task started running, as ms after its submission) and no
event log is written: one key per finished task instead of two, and fewer commands per task.

A timeline is plain when its events are exactly [QUEUED (with the spec), RUNNING, final], the final
state is one that is never reopened (SUCCEEDED, FAILED), and `unfold` gives back the first two from
the final one, byte for byte: QUEUED at the submission time with no other field, RUNNING at its own
time with the final event's attempt and worker and no other field. Readers rebuild them with
`unfold` (store.py), so a folded timeline reads exactly as the log would have. It is kept as long as
the result: it holds no more than the result.
"""

from __future__ import annotations

from tasktide.v1 import task_pb2

# Final states a task never leaves (only a DEAD task is requeued, which reopens its result).
FOLDABLE = frozenset({task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_FAILED})


def unfold(final: task_pb2.TaskEvent, submitted_ms: int, started_ms: int) -> list[task_pb2.TaskEvent]:
    """The QUEUED and RUNNING events of a folded timeline, as kept (without task id, name, queue
    and spec), from the final event as kept and the two times."""
    return [
        task_pb2.TaskEvent(state=task_pb2.TASK_STATE_QUEUED, at_ms=submitted_ms),
        task_pb2.TaskEvent(
            state=task_pb2.TASK_STATE_RUNNING, at_ms=started_ms, attempt=final.attempt, worker_id=final.worker_id
        ),
    ]


def fold(evs: list[task_pb2.TaskEvent], kept: list[tuple[bytes, bytes, bytes]]) -> int | None:
    """For one task's events of a `record` call and their kept forms (store._kept): how long after
    its submission the task started running (ms) when the timeline is plain, else None."""
    if len(evs) != 3:
        return None
    queued, running, final = evs
    if (
        queued.state != task_pb2.TASK_STATE_QUEUED
        or not queued.HasField("spec")
        or running.state != task_pb2.TASK_STATE_RUNNING
        or final.state not in FOLDABLE
        or any(e.progress_only or e.reopen for e in evs)
        or any(slim or head for _, slim, head in kept)  # each kept slim: one name and queue
    ):
        return None
    rebuilt = unfold(final, queued.at_ms, running.at_ms)  # reads the final event's attempt and worker only
    if [e.SerializeToString() for e in rebuilt] != [kept[0][0], kept[1][0]]:
        return None
    return running.at_ms - queued.at_ms
