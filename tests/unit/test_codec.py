"""Payloads and errors as data: JSON in and out unchanged, a value that is not JSON refused at
once, an error carried as type, message and traceback text."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf import any_pb2

import tasktide
from tasktide._codec import decode_payload, encode_json, error_from_exception, payload
from tasktide.v1 import task_pb2


@pytest.mark.parametrize("value", [None, 0, -1.5, "é", [1, [2, None]], {"k": {"nested": [True, False]}}, []])
def test_json_values_round_trip(value: object) -> None:
    assert decode_payload(payload(value)) == value


def test_encoding_is_compact_and_keeps_unicode() -> None:
    assert encode_json({"a": [1, 2], "s": "é"}) == '{"a":[1,2],"s":"é"}'.encode()


@pytest.mark.parametrize("value", [{1, 2}, dt.datetime(2026, 1, 1), object(), b"bytes"])
def test_a_value_that_is_not_json_is_refused_when_encoded(value: object) -> None:
    with pytest.raises(tasktide.ConfigurationError, match="not JSON-compatible"):
        encode_json(value)


def test_an_empty_or_missing_payload_decodes_to_the_default() -> None:
    assert decode_payload(task_pb2.Payload(), default=[]) == []
    assert decode_payload(task_pb2.Payload(json=b""), default={}) == {}


def test_a_message_payload_is_returned_as_the_message_without_unpacking() -> None:
    message = any_pb2.Any(type_url="type.googleapis.com/shop.Order", value=b"\x08\x01")
    got = decode_payload(task_pb2.Payload(message=message))
    assert got == message


def test_an_error_is_data_with_a_qualified_type_and_the_traceback_text() -> None:
    class Refused(Exception):
        pass

    try:
        raise Refused("not today")
    except Refused as exc:
        error = error_from_exception(exc)
    assert (
        error.type == f"{__name__}.test_an_error_is_data_with_a_qualified_type_and_the_traceback_text.<locals>.Refused"
    )
    assert error.message == "not today"
    assert 'raise Refused("not today")' in error.traceback
    assert error_from_exception(ValueError("v")).type == "ValueError"  # builtins stay short
