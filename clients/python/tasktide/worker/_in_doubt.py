"""Outcomes a lost session may not have recorded, sent again on the next one.

The registry answers an outcome with nothing when all is well, and records it after reading it. A
replica that dies (or a connection that breaks) between the worker's write and the registry's record
loses the outcome: its task would wait for its lease to expire and run again. So the worker keeps
the outcomes it wrote during the last lease period, and when its session is lost it sends them again
on the next session, which may be served by another replica. Sending one twice is harmless: an
outcome whose lease was already ended is refused as stale (and nothing is recorded), and a task
keeps its first final result. Older outcomes are not kept: their leases have expired, and their tasks
are delivered again whatever the worker sends.
"""

from __future__ import annotations

import time
from collections import deque

from tasktide.v1 import task_pb2

MAX_KEPT = 10_000  # outcomes kept at most, whatever the lease


class InDoubt:
    def __init__(self, horizon: float, limit: int = MAX_KEPT) -> None:
        self.horizon = horizon  # seconds: the lease
        self._kept: deque[tuple[float, task_pb2.Outcome]] = deque(maxlen=limit)
        self._resent: set[tuple[str, int]] = set()

    def written(self, outcomes: list[task_pb2.Outcome]) -> None:
        """`outcomes` are about to be written on the session."""
        now = time.monotonic()
        self._kept.extend((now, o) for o in outcomes)
        self._forget(now)

    def take(self) -> list[task_pb2.Outcome]:
        """The outcomes to send again on a new session (then forgotten)."""
        self._forget(time.monotonic())
        out = [o for _, o in self._kept]
        self._kept.clear()
        self._resent = {(o.task_id, o.lease_token) for o in out}
        return out

    def was_resent(self, task_id: str, lease_token: int) -> bool:
        """Whether a refusal concerns an outcome sent again (expected when the first one was
        recorded: not worth a warning)."""
        return (task_id, lease_token) in self._resent

    def _forget(self, now: float) -> None:
        while self._kept and now - self._kept[0][0] > self.horizon:
            self._kept.popleft()
