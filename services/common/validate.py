"""Validation of what clients send, with messages a person can act on."""

from __future__ import annotations

import json
import math
import re
import time

from tasktide.v1 import task_pb2
from tasktide_services.common.errors import InvalidArgument, ResourceExhausted
from tasktide_services.common.layout import PRIORITY_MAX, PRIORITY_MIN
from tasktide_services.common.settings import Limits

TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
QUEUE_NAME = re.compile(r"([A-Za-z0-9_.:\-]+~)?[A-Za-z0-9_.:\-]+")  # NS~QUEUE: common/tenancy.py
TASK_ID = re.compile(r"[0-9a-f]{32}")
DEFAULT_QUEUE = "default"
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last instant a datetime can hold
_STRING = re.compile(rb'"(?:[^"\\]+|\\.)*"')  # a JSON string, escapes included
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


def task_id(value: str) -> str:
    if not TASK_ID.fullmatch(value):
        raise InvalidArgument(f"malformed task id {value[:80]!r}: expected 32 lowercase hex characters")
    return value


# Task and queue names seen to match their pattern: most submissions repeat a few of them, so a
# set lookup stands in for the regular expression. Bounded: emptied when full.
_MATCHED_KEPT = 4096
_names: set[str] = set()
_queues: set[str] = set()


def _matches(pattern: re.Pattern[str], value: str, known: set[str]) -> bool:
    if not pattern.fullmatch(value):
        return False
    if len(known) >= _MATCHED_KEPT:
        known.clear()
    known.add(value)
    return True


def queue_name(value: str, limits: Limits) -> str:
    value = value or DEFAULT_QUEUE
    if len(value) > limits.max_queue_length or not (value in _queues or _matches(QUEUE_NAME, value, _queues)):
        raise InvalidArgument(f"invalid queue name {value[:80]!r}: 1..{limits.max_queue_length} of A-Z a-z 0-9 _ . : -")
    return value


def too_deep(data: bytes, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep in the JSON text `data`,
    found without recursion and without parsing: with strings and everything but brackets taken
    out, each pass removes the innermost pairs, so the brackets are gone after `depth` passes.
    Unbalanced brackets are left to the parser to report."""
    if len(data) <= limit or data.count(b"[") + data.count(b"{") <= limit:
        return False  # each level opens with a bracket
    brackets = _STRING.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        inner = brackets.replace(b"[]", b"")
        if not inner or inner == brackets:
            return False
        brackets = inner
    return True


def json_value(data: bytes) -> object:
    """The value of JSON text in UTF-8 (a byte order mark allowed), as json.loads gives it, at a
    third of its cost for the short texts of task arguments (json.loads first detects which of five
    encodings bytes are in). Raises ValueError, of which UnicodeDecodeError is one, for bytes that
    are not such text."""
    text = data.decode()
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.strip(_JSON_SPACE)
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


_EMPTY_JSON: dict[type, bytes] = {list: b"[]", dict: b"{}"}


def _json_payload(p: task_pb2.Payload, what: str, kind: type, limits: Limits) -> None:
    data = p.json
    if not data:  # no payload, an empty one, or a protobuf message
        if kind is dict and p.WhichOneof("kind") == "message":
            raise InvalidArgument(f"{what} must be JSON")
        return
    if data == _EMPTY_JSON[kind]:
        return
    if too_deep(data, limits.max_json_depth):
        raise InvalidArgument(f"{what} are nested more than {limits.max_json_depth} levels deep")
    try:
        value = json_value(data) if data else kind()
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument(f"{what} are nested too deeply") from None
    if not isinstance(value, kind):
        raise InvalidArgument(f"{what} must be a JSON {'array' if kind is list else 'object'}")


def spec(s: task_pb2.TaskSpec, limits: Limits) -> None:
    """Check a TaskSpec in place; fills the default queue."""
    name = s.name
    if not name:
        raise InvalidArgument("task name is empty")
    if len(name) > limits.max_name_length:
        raise InvalidArgument(f"task name is {len(name)} characters; the limit is {limits.max_name_length}")
    if not (name in _names or _matches(TASK_NAME, name, _names)):
        raise InvalidArgument(f"invalid task name {s.name[:80]!r}: letters, digits, _ . : - and no leading digit")
    queue = s.queue
    if (checked := queue_name(queue, limits)) is not queue:  # the default queue filled in
        s.queue = checked
    if not PRIORITY_MIN <= s.priority <= PRIORITY_MAX:
        raise InvalidArgument(f"priority {s.priority} is out of range {PRIORITY_MIN}..{PRIORITY_MAX}")
    if s.ByteSize() > limits.max_payload_bytes:  # the payload is within the spec: counted only then
        size = s.args.ByteSize() + s.kwargs.ByteSize()
        if size > limits.max_payload_bytes:
            raise ResourceExhausted(f"payload is {size} bytes; the limit is {limits.max_payload_bytes}")
    times(s, limits)
    if len(s.idempotency_key) > 256:
        raise InvalidArgument("idempotency key is longer than 256 characters")
    if s.rate_limit:
        rate_interval_ms(s.rate_limit)
    _json_payload(s.args, "args", list, limits)
    _json_payload(s.kwargs, "kwargs", dict, limits)


def seconds(value: float, what: str, most: float) -> float:
    """A number of seconds in 0..most (NaN and infinities refused)."""
    if not 0.0 <= value <= most:
        raise InvalidArgument(f"{what} must be a number of seconds from 0 to {most:.0f}, got {value}")
    return value


def unix_ms(value: int, what: str) -> int:
    """A time as Unix milliseconds, or 0 for none."""
    if not 0 <= value <= MAX_TIME_MS:
        raise InvalidArgument(f"{what} must be Unix milliseconds (up to {MAX_TIME_MS}) or 0, got {value}")
    return value


def times(s: task_pb2.TaskSpec, limits: Limits) -> None:
    """Every time in a spec, where it enters: countdown, eta, expiry, time limits, retry backoff."""
    most = limits.max_delay_seconds
    retry = s.retry
    if (
        0.0 <= s.countdown <= most
        and not s.eta_ms
        and 0 <= s.expires_ms <= MAX_TIME_MS
        and 0.0 <= s.time_limit < math.inf
        and 0.0 <= s.soft_time_limit < math.inf
        and 0.0 <= retry.backoff_base <= most
        and 0.0 <= retry.backoff_max <= most
    ):
        return  # the usual spec, in one expression; the checks below say what is wrong
    seconds(s.countdown, "countdown", most)
    unix_ms(s.eta_ms, "eta")
    if s.eta_ms and s.eta_ms > time.time() * 1000 + most * 1000:
        raise InvalidArgument(f"eta is more than {most:.0f} seconds ahead")
    unix_ms(s.expires_ms, "expires")
    for value, what in ((s.time_limit, "time_limit"), (s.soft_time_limit, "soft_time_limit")):
        if not (value >= 0 and math.isfinite(value)):
            raise InvalidArgument(f"{what} must be a non-negative number of seconds, got {value}")
    seconds(s.retry.backoff_base, "retry backoff", most)
    seconds(s.retry.backoff_max, "retry backoff_max", most)


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


MAX_CONCURRENCY = 1024  # tasks a worker runs at a time, as a ResizeWorker may ask and a worker report


def concurrency(n: int) -> int:
    if not 1 <= n <= MAX_CONCURRENCY:
        raise InvalidArgument(f"a concurrency is 1..{MAX_CONCURRENCY}, not {n}")
    return n
