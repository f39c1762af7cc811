"""The shortcuts of validate.spec on admission's hot path: task and queue names already seen to
match are looked up instead of matched again (a bounded set), and the usual empty arguments skip
the JSON parser. Each must give the answer the full check gives, the second time as the first."""

from __future__ import annotations

import pytest

from tasktide.v1 import task_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import InvalidArgument
from tasktide_services.common.settings import Limits

LIMITS = Limits()


def _outcome(**fields: object) -> str:
    spec = task_pb2.TaskSpec(**fields)  # type: ignore[arg-type]
    try:
        validate.spec(spec, LIMITS)
    except InvalidArgument as exc:
        return str(exc)
    return "ok"


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("t.add", True), ("_x:y-z", True), ("1t", False), ("t add", False), ("t\n", False), ("ä", False)],
)
def test_a_task_name_is_judged_the_same_every_time(name: str, accepted: bool) -> None:
    answers = {_outcome(name=name) for _ in range(3)}
    assert len(answers) == 1
    assert (answers == {"ok"}) is accepted


@pytest.mark.parametrize(
    ("queue", "accepted"),
    [("emails", True), ("ns~q", True), ("", True), ("a b", False), ("~q", False), ("q\n", False)],
)
def test_a_queue_name_is_judged_the_same_every_time(queue: str, accepted: bool) -> None:
    answers = {_outcome(name="t", queue=queue) for _ in range(3)}
    assert len(answers) == 1
    assert (answers == {"ok"}) is accepted


def test_the_default_queue_is_filled_in() -> None:
    spec = task_pb2.TaskSpec(name="t")
    validate.spec(spec, LIMITS)
    assert spec.queue == validate.DEFAULT_QUEUE


def test_the_names_kept_are_bounded() -> None:
    for i in range(validate._MATCHED_KEPT + 10):
        validate.queue_name(f"q{i}", LIMITS)
        assert _outcome(name=f"t{i}") == "ok"
    assert len(validate._names) <= validate._MATCHED_KEPT
    assert len(validate._queues) <= validate._MATCHED_KEPT


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (b"[]", b"{}", "ok"),
        (b"", b"", "ok"),
        (b"{}", b"{}", "args must be a JSON array"),
        (b"[]", b"[]", "kwargs must be a JSON object"),
        (b"[1]", b'{"a": 1}', "ok"),
        (b"[1", b"{}", "args is not valid JSON"),
    ],
)
def test_empty_arguments_are_judged_as_the_parser_would(args: bytes, kwargs: bytes, expected: str) -> None:
    outcome = _outcome(name="t", args=task_pb2.Payload(json=args), kwargs=task_pb2.Payload(json=kwargs))
    assert outcome.startswith(expected), outcome


def test_keyword_arguments_given_as_a_message_are_refused() -> None:
    kwargs = task_pb2.Payload()
    kwargs.message.type_url = "type.googleapis.com/x"
    assert _outcome(name="t", kwargs=kwargs) == "kwargs must be JSON"
    args = task_pb2.Payload()
    args.message.type_url = "type.googleapis.com/x"
    assert _outcome(name="t", args=args) == "ok"
