"""Two helpers of admission's hot path: new ids drawn in one batch (services/common/ids.py) and the
JSON check of task arguments (validate.json_value), each against what the standard library gives."""

from __future__ import annotations

import json
import uuid

import pytest

from tasktide_services.common.ids import new_id, new_ids
from tasktide_services.common.validate import TASK_ID, json_value


def test_new_ids_are_distinct_version_4_uuids_in_hex():
    ids = new_ids(5000) + [new_id()]
    assert len(set(ids)) == 5001
    for i in ids:
        u = uuid.UUID(i)
        assert TASK_ID.fullmatch(i) and u.hex == i
        assert u.version == 4 and u.variant == uuid.RFC_4122
    # every variant character occurs (8, 9, a, b): the bits below the variant stay random
    assert {i[16] for i in ids} == set("89ab")
    assert new_ids(0) == []


@pytest.mark.parametrize(
    "text",
    [b"[]", b"{}", b"[1, 2]", b' {"a": [1, {"b": null}]} \n', b"\xef\xbb\xbf[1]", b"NaN", b'"x"', b"\t0\r\n"],
)
def test_json_value_reads_what_json_loads_reads(text):
    expected = json.loads(text)
    got = json_value(text)
    assert got == expected or (got != got and expected != expected)  # NaN


@pytest.mark.parametrize("text", [b"", b"  ", b"[1", b"[1] x", b"1 2", b"\xff[]", b"[1]\xef\xbb\xbf", b"{'a': 1}"])
def test_json_value_refuses_what_json_loads_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        json_value(text)
