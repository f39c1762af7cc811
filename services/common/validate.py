"""Validation of what clients send, with messages a person can act on."""

from __future__ import annotations

import json
import re

from tasktide.v1 import task_pb2
from tasktide_services.common.errors import InvalidArgument, ResourceExhausted
from tasktide_services.common.layout import PRIORITY_MAX, PRIORITY_MIN
from tasktide_services.common.settings import Limits

TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
QUEUE_NAME = re.compile(r"([A-Za-z0-9_.:\-]+~)?[A-Za-z0-9_.:\-]+")  # NS~QUEUE: common/tenancy.py
TASK_ID = re.compile(r"[0-9a-f]{32}")
DEFAULT_QUEUE = "default"


def task_id(value: str) -> str:
    if not TASK_ID.fullmatch(value):
        raise InvalidArgument(f"malformed task id {value[:80]!r}: expected 32 lowercase hex characters")
    return value


def queue_name(value: str, limits: Limits) -> str:
    value = value or DEFAULT_QUEUE
    if len(value) > limits.max_queue_length or not QUEUE_NAME.fullmatch(value):
        raise InvalidArgument(f"invalid queue name {value[:80]!r}: 1..{limits.max_queue_length} of A-Z a-z 0-9 _ . : -")
    return value


def _json_payload(p: task_pb2.Payload, what: str, kind: type) -> None:
    which = p.WhichOneof("kind")
    if which is None:
        return
    if which == "message":
        if kind is dict:
            raise InvalidArgument(f"{what} must be JSON")
        return
    try:
        value = json.loads(p.json) if p.json else kind()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise InvalidArgument(f"{what} must be a JSON {'array' if kind is list else 'object'}")


def spec(s: task_pb2.TaskSpec, limits: Limits) -> None:
    """Check a TaskSpec in place; fills the default queue."""
    if not s.name:
        raise InvalidArgument("task name is empty")
    if len(s.name) > limits.max_name_length:
        raise InvalidArgument(f"task name is {len(s.name)} characters; the limit is {limits.max_name_length}")
    if not TASK_NAME.fullmatch(s.name):
        raise InvalidArgument(f"invalid task name {s.name[:80]!r}: letters, digits, _ . : - and no leading digit")
    s.queue = queue_name(s.queue, limits)
    if not PRIORITY_MIN <= s.priority <= PRIORITY_MAX:
        raise InvalidArgument(f"priority {s.priority} is out of range {PRIORITY_MIN}..{PRIORITY_MAX}")
    size = s.args.ByteSize() + s.kwargs.ByteSize()
    if size > limits.max_payload_bytes:
        raise ResourceExhausted(f"payload is {size} bytes; the limit is {limits.max_payload_bytes}")
    if not 0 <= s.countdown <= limits.max_countdown:  # NaN compares false: refused too
        raise InvalidArgument(f"countdown must be a number of seconds from 0 to {limits.max_countdown:.0f}")
    if s.time_limit < 0 or s.soft_time_limit < 0:
        raise InvalidArgument("time limits must be non-negative")
    if len(s.idempotency_key) > 256:
        raise InvalidArgument("idempotency key is longer than 256 characters")
    if s.rate_limit:
        rate_interval_ms(s.rate_limit)
    _json_payload(s.args, "args", list)
    _json_payload(s.kwargs, "kwargs", dict)


_RATE_UNITS = {"s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def rate_interval_ms(rate: str) -> float:
    """Milliseconds between starts for "N/s", "N/m" or "N/h"."""
    count, _, unit = rate.partition("/")
    try:
        n = float(count)
    except ValueError:
        n = 0.0
    if unit not in _RATE_UNITS or not n > 0:
        raise InvalidArgument(f"invalid rate limit {rate[:40]!r}: expected N/s, N/m or N/h with N > 0")
    return _RATE_UNITS[unit] / n


def batch_size(n: int, limits: Limits) -> None:
    if n > limits.max_batch:
        raise ResourceExhausted(f"batch of {n} items; the limit is {limits.max_batch}")
