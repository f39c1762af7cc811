"""When a schedule fires next: cron expressions read in their timezone, intervals, missed
occurrences skipped after the one fired, an end that stops it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tasktide.v1 import scheduler_pb2, task_pb2
from tasktide_services.scheduler import occurrences

UTC = dt.UTC


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def cron(expr: str, tz: str = "", **kw: Any) -> scheduler_pb2.Schedule:
    return scheduler_pb2.Schedule(id="c", task=task_pb2.TaskSpec(name="t.add"), cron=expr, timezone=tz, **kw)


def test_cron_next_run_is_the_next_matching_minute() -> None:
    now = ms(dt.datetime(2026, 11, 25, 10, 7, 30, tzinfo=UTC))
    assert occurrences.first(cron("*/5 * * * *"), now) == ms(dt.datetime(2026, 11, 25, 10, 10, tzinfo=UTC))
    assert occurrences.first(cron("0 0 1 1 *"), now) == ms(dt.datetime(2027, 1, 1, tzinfo=UTC))
    at_ten = ms(dt.datetime(2026, 11, 25, 10, 10, tzinfo=UTC))
    assert occurrences.following(cron("*/5 * * * *"), at_ten, at_ten) == at_ten + 5 * 60_000


def test_cron_is_read_in_its_timezone_across_dst() -> None:
    s = cron("0 9 * * *", "Europe/Paris")
    before = ms(dt.datetime(2026, 3, 28, 12, tzinfo=UTC))  # Paris moves to summer time on the 29th
    first = occurrences.first(s, before)
    assert first == ms(dt.datetime(2026, 3, 29, 7, tzinfo=UTC))  # 09:00 CEST
    assert occurrences.following(s, first, first) == ms(dt.datetime(2026, 3, 30, 7, tzinfo=UTC))


def test_missed_occurrences_are_skipped_after_the_one_fired() -> None:
    s = cron("*/5 * * * *")
    missed = ms(dt.datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    now = ms(dt.datetime(2026, 11, 25, 10, 7, tzinfo=UTC))
    assert occurrences.following(s, missed, now) == ms(dt.datetime(2026, 11, 25, 10, 10, tzinfo=UTC))
    every = scheduler_pb2.Schedule(id="i", task=task_pb2.TaskSpec(name="t.add"), every=60.0)
    assert occurrences.following(every, 1_000_000, 1_000_000 + 10 * 60_000 + 5) == 1_000_000 + 11 * 60_000
    ended = scheduler_pb2.Schedule(id="e", task=task_pb2.TaskSpec(name="t.add"), every=60.0, end_ms=1_030_000)
    assert occurrences.following(ended, 1_000_000, 1_000_000) == 0
