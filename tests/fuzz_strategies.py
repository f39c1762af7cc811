"""Hypothesis strategies for any protobuf message, derived from its descriptor: every field may be
left out or given a value of its type (bounded sizes and nesting), with a bias toward values the
services look at (task names, queue names, task ids, JSON payloads), so inputs reach past the
first check as well as failing it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tasktide.v1 import task_pb2

MAX_DEPTH = 4
F = FieldDescriptor

TASK_ID = st.one_of(st.uuids().map(lambda u: u.hex), st.sampled_from(["", "0" * 32, "X" * 32, "../..", "a" * 33]))
NAMES = st.one_of(
    st.sampled_from(["t.add", "t.echo", "t.unknown", "", "9x", "a" * 201, "é", "a b"]), st.text(max_size=12)
)
QUEUES = st.one_of(st.sampled_from(["fuzz", "default", "ns~fuzz", "", "~", "a" * 129, "q q"]), st.text(max_size=12))
JSON = st.sampled_from([b"", b"[]", b"{}", b"[1, 2]", b'{"a": 1}', b"[", b"null", b'"x"', b"[NaN]", b"\xff", b"1e999"])
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.001, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e300, 2**63]),
)

# Fields the services read by name, given values that mean something to them.
BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "task_id": TASK_ID,
    "workflow_id": TASK_ID,
    "name": NAMES,
    "queue": QUEUES,
    "json": JSON,
    "rate_limit": st.sampled_from(["", "5/s", "0/s", "x/s", "1/y", "nan/s", "1e999/m"]),
}

_INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _int(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(-3, 1000).filter(lambda v: lo <= v <= hi), st.sampled_from([lo, hi]), st.integers(lo, hi)
    )


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.name in BY_NAME and f.type in (F.TYPE_STRING, F.TYPE_BYTES):
        return BY_NAME[f.name]
    if f.type in _INTS:
        return _int(*_INTS[f.type])
    if f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return (
            FLOATS if f.type == F.TYPE_DOUBLE else FLOATS.map(lambda v: v if abs(v) < 3e38 or math.isnan(v) else 1e38)
        )
    if f.type == F.TYPE_BOOL:
        return st.booleans()
    if f.type == F.TYPE_STRING:
        return st.one_of(st.text(max_size=24), TASK_ID, NAMES)
    if f.type == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=32), JSON)
    if f.type == F.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]), st.integers(-5, 1000))
    raise AssertionError(f"no strategy for {f.full_name} of type {f.type}")


def _single(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if f.type == F.TYPE_MESSAGE:
        return None if depth >= MAX_DEPTH else message(f.message_type, depth + 1)
    return _scalar(f)


def _field(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        key = _scalar(f.message_type.fields_by_name["key"])
        value = _single(f.message_type.fields_by_name["value"], depth)
        return None if value is None else st.dictionaries(key, value, max_size=3)
    one = _single(f, depth)
    if one is None:
        return None
    if f.is_repeated:
        return st.lists(one, max_size=4)
    return one


def _set(msg: Message, f: FieldDescriptor, value: Any) -> None:
    target = getattr(msg, f.name)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        is_message = f.message_type.fields_by_name["value"].type == F.TYPE_MESSAGE
        for k, v in value.items():
            if is_message:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif f.is_repeated:
        target.extend(value)
    elif f.type == F.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(msg, f.name, value)


def _builder(desc: Descriptor, base: Message | None = None) -> Callable[[dict[str, Any]], Message]:
    cls = GetMessageClass(desc)

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        if base is not None:
            msg.CopyFrom(base)
        for name, value in values.items():
            msg.ClearField(name)
            _set(msg, desc.fields_by_name[name], value)
        return msg

    return build


def _fields(desc: Descriptor, depth: int) -> dict[str, st.SearchStrategy[Any]]:
    return {f.name: s for f in desc.fields if (s := _field(f, depth)) is not None}


def message(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of this type: any subset of its fields set, each to a value of its type. A
    TaskSpec is as often a valid one with one or two fields changed (task_specs), so that what
    is checked after the first invalid field is reached too."""
    anything = st.fixed_dictionaries({}, optional=_fields(desc, depth)).map(_builder(desc))
    if desc.full_name == task_pb2.TaskSpec.DESCRIPTOR.full_name:
        return st.one_of(anything, task_specs(depth))
    return anything


def task_specs(depth: int = 0) -> st.SearchStrategy[Message]:
    """Valid TaskSpecs (t.add on queue "fuzz") with one or two fields given any value of their type."""
    valid = task_pb2.TaskSpec(name="t.add", queue="fuzz")
    valid.args.json = b"[1, 2]"
    fields = _fields(task_pb2.TaskSpec.DESCRIPTOR, depth)
    changed = st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=2, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: fields[n] for n in names})
    )
    return changed.map(_builder(task_pb2.TaskSpec.DESCRIPTOR, valid))
