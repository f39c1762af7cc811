"""The outcomes a worker sends again on a new session (tasktide/worker/_in_doubt.py)."""

from __future__ import annotations

import time

from tasktide.v1 import task_pb2
from tasktide.worker._in_doubt import InDoubt


def _out(task_id: str, token: int = 1) -> task_pb2.Outcome:
    return task_pb2.Outcome(task_id=task_id, lease_token=token)


def test_outcomes_of_the_last_lease_period_are_sent_again_once() -> None:
    d = InDoubt(horizon=0.2)
    d.written([_out("old")])
    time.sleep(0.3)  # older than a lease: its task is delivered again whatever is sent
    d.written([_out("a", 7), _out("b", 8)])
    assert [o.task_id for o in d.take()] == ["a", "b"]
    assert d.was_resent("a", 7) and not d.was_resent("a", 6) and not d.was_resent("old", 1)
    assert d.take() == []  # sent again once; the next loss sends only what was written since


def test_what_is_kept_is_bounded() -> None:
    d = InDoubt(horizon=60.0, limit=3)
    d.written([_out(str(i)) for i in range(10)])
    assert [o.task_id for o in d.take()] == ["7", "8", "9"]
