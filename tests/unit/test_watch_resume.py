"""The state a Watch carries from a broken stream to the next (tasktide/_watching.py): the request
that resumes it, the events it drops as already seen, and when it gives up."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktide import _watching
from tasktide._watching import Resumable
from tasktide.v1 import task_pb2
from tasktide_services.testing import unreachable_address

S = task_pb2


def _ev(task_id: str, cursor: int, state: int = S.TASK_STATE_RUNNING, progress: bool = False) -> task_pb2.TaskEvent:
    return task_pb2.TaskEvent(task_id=task_id, cursor=str(cursor), state=state, progress_only=progress)  # type: ignore[arg-type]


def _unavailable() -> grpc.RpcError:
    """A real UNAVAILABLE: a call to a port where nothing listens."""
    with unreachable_address() as down, grpc.insecure_channel(down) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            return exc
    raise AssertionError("the call succeeded")


def test_events_already_seen_are_dropped_and_the_request_resumes_from_the_cursors() -> None:
    w = Resumable(["a", "b", "a"], until_final=True, cursors={"b": "2"}, final_only=False)
    assert list(w.request().task_ids) == ["a", "b"]
    assert [w.fresh(e) for e in (_ev("a", 1), _ev("b", 2), _ev("b", 3), _ev("a", 1))] == [True, False, True, False]
    assert w.fresh(_ev("a", 2, S.TASK_STATE_SUCCEEDED))
    assert not w.done()
    assert w.resume_after_end()  # the stream ended with "b" not final: it ended early
    req = w.request()
    assert list(req.task_ids) == ["b"]  # "a" ended: nothing more to wait for
    assert dict(req.cursors) == {"b": "3"}
    assert not w.fresh(_ev("b", 3))
    assert w.fresh(_ev("b", 4, S.TASK_STATE_SUCCEEDED, progress=True))
    assert not w.done()  # a progress report is not the end, whatever state it shows
    assert w.fresh(_ev("b", 5, S.TASK_STATE_FAILED))
    assert w.done()


def test_a_final_only_watch_does_not_repeat_a_final_event() -> None:
    w = Resumable(["a"], until_final=False, cursors=None, final_only=True)
    assert w.fresh(_ev("a", 4, S.TASK_STATE_SUCCEEDED))
    assert not w.resume_after_end()  # without until_final a stream that ends normally is the end
    assert not w.fresh(_ev("a", 4, S.TASK_STATE_SUCCEEDED))  # sent again by another replica


def test_unavailable_is_tried_again_with_growing_pauses_until_the_window_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    exc = _unavailable()
    w = Resumable(["a"], until_final=True, cursors=None, final_only=False)
    pauses = [w.resume_after(exc) for _ in range(7)]
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    w.fresh(_ev("a", 1))  # an event: the next failure starts a new window
    assert w.resume_after(exc) == 0.1
    monkeypatch.setattr(_watching, "RESUME_FOR", -1.0)
    assert w.resume_after(exc) is None  # the window has passed: the caller raises Unavailable
