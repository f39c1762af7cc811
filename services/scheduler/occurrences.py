"""When a periodic schedule fires: validating its definition and computing its occurrences.

Times are Unix milliseconds. A cron expression is read in the schedule's timezone (UTC when none is
given), so "0 9 * * *" in Europe/Paris fires at 09:00 local time across daylight-saving changes.
An interval schedule fires every `every` seconds, counted from its start (or from when it was put).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo

from croniter import croniter

from tasktide.v1 import scheduler_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import InvalidArgument
from tasktide_services.common.settings import Limits

SCHEDULE_ID = re.compile(r"([A-Za-z0-9_.:\-]+~)?[A-Za-z0-9_.:\-]+")  # NS~ID: common/tenancy.py
MAX_ID_LENGTH = 200
MIN_EVERY = 0.01  # seconds
MAX_EVERY = 366 * 86_400.0


def schedule_id(value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or not SCHEDULE_ID.fullmatch(value):
        raise InvalidArgument(f"invalid schedule id {value[:80]!r}: 1..{MAX_ID_LENGTH} of A-Z a-z 0-9 _ . : -")
    return value


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown timezone {name[:80]!r}: expected an IANA name such as Europe/Paris") from None


def check(s: scheduler_pb2.Schedule, limits: Limits) -> None:
    """Validate a schedule's definition in place (fills the task's default queue)."""
    schedule_id(s.id)
    if not s.HasField("task"):
        raise InvalidArgument("a schedule needs a task")
    validate.spec(s.task, limits)
    if s.task.eta_ms or s.task.expires_ms:
        raise InvalidArgument("a schedule's task cannot have an absolute eta or expiry; it is fired at each occurrence")
    if bool(s.cron) == bool(s.every):
        raise InvalidArgument("a schedule needs exactly one of cron and every")
    if s.cron:
        if len(s.cron) > 200 or not croniter.is_valid(s.cron):
            raise InvalidArgument(
                f"invalid cron expression {s.cron[:80]!r}: expected five fields such as '*/5 * * * *'"
            )
    elif not MIN_EVERY <= s.every <= MAX_EVERY:  # also refuses NaN
        raise InvalidArgument(f"every must be between {MIN_EVERY} and {MAX_EVERY:.0f} seconds, got {s.every}")
    _zone(s.timezone)
    validate.unix_ms(s.start_ms, "start")
    validate.unix_ms(s.end_ms, "end")
    if s.end_ms and s.end_ms < s.start_ms:
        raise InvalidArgument("a schedule cannot end before it starts")


def _cron_after(s: scheduler_pb2.Schedule, after_ms: int) -> int:
    """The first cron occurrence strictly after `after_ms`."""
    start = dt.datetime.fromtimestamp(after_ms / 1000, _zone(s.timezone))
    nxt: dt.datetime = croniter(s.cron, start).get_next(dt.datetime)
    return int(nxt.timestamp() * 1000)


def _within(s: scheduler_pb2.Schedule, when: int) -> int:
    return 0 if s.end_ms and when > s.end_ms else when


def first(s: scheduler_pb2.Schedule, now: int) -> int:
    """The first occurrence of a schedule put (or resumed) at `now`; 0 when it has none left."""
    if s.every:
        every = s.every * 1000
        if not s.start_ms:
            return _within(s, now + round(every))
        if s.start_ms > now:
            return _within(s, s.start_ms)
        return _within(s, s.start_ms + round(every * (math.floor((now - s.start_ms) / every) + 1)))
    return _within(s, _cron_after(s, max(now, s.start_ms - 1)))


def following(s: scheduler_pb2.Schedule, occurrence: int, now: int) -> int:
    """The occurrence after `occurrence` that lies in the future: occurrences missed while no
    scheduler ran are skipped (the one being fired stands for them). 0 when none is left."""
    if s.every:
        every = s.every * 1000
        steps = max(math.floor((now - occurrence) / every) + 1, 1)
        return _within(s, occurrence + round(every * steps))
    return _within(s, _cron_after(s, max(occurrence, now, s.start_ms - 1)))
