"""A Watch that outlives its results replica: when the stream breaks (the replica died, a connection
was cut), the watch is opened again, on whichever replica the results address now leads to, from
the cursor of the last event seen of each task. Nothing is missed and nothing is seen twice: the
results service keeps every task's event log, a cursor names a place in it, and an event at or
before a task's cursor is dropped here (a final-only watch is answered with the final event again).

A watch gives up (the ServiceError of the last failure) after RESUME_FOR seconds without an event
in which every attempt failed, or at once on an error that trying again cannot cure.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc

from tasktide._states import FINAL_PROTO_STATES
from tasktide.v1 import results_pb2, task_pb2

RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
RESUME_FOR = 30.0
PAUSE_FIRST, PAUSE_MAX = 0.1, 2.0


def _number(cursor: str) -> int:
    return int(cursor) if cursor.isdigit() else 0


class Resumable:
    """The state of one watch across the streams that serve it."""

    def __init__(
        self, task_ids: Sequence[str], until_final: bool, cursors: dict[str, str] | None, final_only: bool
    ) -> None:
        self.task_ids = list(dict.fromkeys(task_ids))
        self.until_final, self.final_only = until_final, final_only
        self.cursors = dict(cursors or {})
        self.ended: set[str] = set()  # tasks whose final event was seen
        self.resumed = 0  # streams opened again
        self._failing_since: float | None = None
        self._failures = 0

    def request(self) -> results_pb2.WatchRequest:
        ids = self.task_ids
        if self.resumed and self.until_final:  # a task seen to end has nothing more to say
            ids = [t for t in ids if t not in self.ended]
        return results_pb2.WatchRequest(
            task_ids=ids,
            until_final=self.until_final,
            cursors={t: c for t, c in self.cursors.items() if t in ids},
            final_only=self.final_only,
        )

    def fresh(self, ev: task_pb2.TaskEvent) -> bool:
        """Whether `ev` is new to this watch (and note it)."""
        self._failing_since, self._failures = None, 0
        seen = self.cursors.get(ev.task_id, "")
        if ev.cursor and seen and _number(ev.cursor) <= _number(seen):
            return False
        if ev.cursor:
            self.cursors[ev.task_id] = ev.cursor
        if ev.state in FINAL_PROTO_STATES and not ev.progress_only:
            self.ended.add(ev.task_id)
        return True

    def done(self) -> bool:
        return self.until_final and all(t in self.ended for t in self.task_ids)

    def resume_after_end(self) -> bool:
        """The stream ended without an error: open it again only if it ended early (a replica
        shutting down ends its streams)."""
        if self.done() or not self.until_final:
            return False
        self.resumed += 1
        return True

    def resume_after(self, exc: grpc.RpcError) -> float | None:
        """Seconds to wait before opening the stream again after `exc`, or None to give up."""
        code = exc.code() if hasattr(exc, "code") else None
        if code not in RESUMABLE:
            return None
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > RESUME_FOR:
            return None
        self._failures += 1
        self.resumed += 1
        return float(min(PAUSE_FIRST * 2 ** (self._failures - 1), PAUSE_MAX))
