"""The scheduler's transitions on periodic schedules (keys in keys.py, scripts in scripts.lua)."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import scheduler_pb2
from tasktide_services.common.alarm import Alarm
from tasktide_services.common.events import now_ms
from tasktide_services.common.lua import Script, run_pipeline
from tasktide_services.scheduler import keys


@dataclass
class Due:
    """A schedule whose next occurrence has come, as read (not yet claimed)."""

    schedule: scheduler_pb2.Schedule
    occurrence: int
    rev: str


def definition(s: scheduler_pb2.Schedule) -> bytes:
    """The stored form of a schedule: its definition without the fields the server sets."""
    d = scheduler_pb2.Schedule()
    d.CopyFrom(s)
    for f in ("paused", "next_run_ms", "last_run_ms", "last_task_id", "runs", "created_ms"):
        d.ClearField(f)
    return d.SerializeToString(deterministic=True)


def _int(raw: bytes | None) -> int:
    return int(raw) if raw else 0


class ScheduleStore:
    def __init__(self, redis: Redis, scripts: dict[str, Script], alarm: Alarm | None = None) -> None:
        self.redis = redis
        self._s = scripts
        self._alarm = alarm or Alarm()  # told the next occurrences this process writes

    async def put(self, s: scheduler_pb2.Schedule, first: int, now: int, keep_paused: bool) -> None:
        args = [s.id, definition(s), first, now, int(s.paused), int(keep_paused)]
        k = keys.schedule_keys(s.id)
        await self._s["schedule_put"]([k.definition, k.ids, k.due], args)
        if first > 0 and not s.paused:
            self._alarm.notify(first)

    async def get_many(self, ids: list[str]) -> list[tuple[scheduler_pb2.Schedule, str] | None]:
        """Schedules with their state filled in, and the rev of their definition; None where missing."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                k = keys.schedule_keys(i)
                pipe.hgetall(k.definition)
                pipe.zscore(k.due, i)
            res = await pipe.execute()
        out: list[tuple[scheduler_pb2.Schedule, str] | None] = []
        for n in range(0, len(res), 2):
            h: dict[bytes, bytes] = res[n]
            if not h.get(b"def"):
                out.append(None)
                continue
            s = scheduler_pb2.Schedule.FromString(h[b"def"])
            s.paused = h.get(b"paused") == b"1"
            s.next_run_ms = int(res[n + 1] or 0)
            s.last_run_ms = _int(h.get(b"last_run"))
            s.last_task_id = h.get(b"last_task", b"").decode()
            s.runs = _int(h.get(b"runs"))
            s.created_ms = _int(h.get(b"created"))
            out.append((s, h.get(b"rev", b"0").decode()))
        return out

    async def ids(self) -> list[str]:
        # redis-py types its commands for both clients (a value or an awaitable): this one awaits.
        members = await cast(Awaitable[set[bytes]], self.redis.smembers(keys.SCHEDULES))
        return sorted(m.decode() for m in members)

    async def delete(self, schedule_id: str) -> bool:
        k = keys.schedule_keys(schedule_id)
        return bool(await self._s["schedule_delete"]([k.definition, k.ids, k.due], [schedule_id]))

    async def pause(self, schedule_id: str, paused: bool, rev: str, nxt: int) -> int:
        """1 done, 0 no such schedule, -1 its definition changed since `rev` was read."""
        k = keys.schedule_keys(schedule_id)
        done = int(await self._s["schedule_pause"]([k.definition, k.due], [schedule_id, int(paused), rev, nxt]))
        if done == 1 and nxt > 0:
            self._alarm.notify(nxt)
        return done

    async def due(self, now: int, limit: int) -> list[Due]:
        found = await cast(
            Awaitable[list[tuple[bytes, float]]],
            self.redis.zrangebyscore(keys.SCHEDULES_DUE, "-inf", now, start=0, num=limit, withscores=True),
        )
        return await self._due(found)

    async def poll(self, now: int, deadline: int, limit: int) -> tuple[list[tuple[str, int]], list[Due], float]:
        """`stuck`, `due`, and the earliest occurrence or hand-over deadline in the sets (Unix ms;
        math.inf: none), read in one round trip (what the firing loop asks at every step)."""

        def build(pipe: Pipeline) -> None:
            self._s["schedule_stuck"]([keys.SCHEDULES_FIRING], [now, deadline, limit], client=pipe)
            pipe.zrangebyscore(keys.SCHEDULES_DUE, "-inf", now, start=0, num=limit, withscores=True)
            pipe.zrange(keys.SCHEDULES_DUE, 0, 0, withscores=True)
            pipe.zrange(keys.SCHEDULES_FIRING, 0, 0, withscores=True)

        raw, found, first_due, first_firing = await run_pipeline(self.redis, build, self._s)
        nxt = min([float(score) for _, score in [*first_due, *first_firing]], default=math.inf)
        return [keys.fired(m.decode()) for m in raw], await self._due(found), nxt

    async def sleep_until(self, at_ms: float, longest: float, earliest: float = 0) -> None:
        """Until `at_ms`, at most `longest` seconds, or an earlier occurrence written here; not
        before `earliest` (common/alarm.py)."""
        await self._alarm.sleep_until(at_ms, longest, earliest)

    async def _due(self, found: list[tuple[bytes, float]]) -> list[Due]:
        ids = [m.decode() for m, _ in found]
        out: list[Due] = []
        for (_, score), got in zip(found, await self.get_many(ids), strict=True):
            if got is not None:
                out.append(Due(got[0], int(score), got[1]))
        return out

    async def claim(self, d: Due, following: int, deadline: int) -> bool:
        k = keys.schedule_keys(d.schedule.id)
        args = [d.schedule.id, d.occurrence, d.rev, following, deadline]
        return bool(await self._s["schedule_claim"]([k.definition, k.due, k.firing], args))

    async def stuck(self, now: int, deadline: int, limit: int) -> list[tuple[str, int]]:
        """(schedule id, occurrence) claimed but not submitted by their deadline; now this caller's."""
        raw = await self._s["schedule_stuck"]([keys.SCHEDULES_FIRING], [now, deadline, limit])
        return [keys.fired(m.decode()) for m in raw]

    async def firing_at(self, deadline: int) -> list[str]:
        """The members of :firing whose hand-over deadline is `deadline` (one claim's, owed.py)."""
        found = await cast(Awaitable[list[bytes]], self.redis.zrangebyscore(keys.SCHEDULES_FIRING, deadline, deadline))
        return [m.decode() for m in found]

    async def firing_again(self, members: list[str], in_ms: int) -> None:
        """Members of :firing (keys.firing) to submit again in `in_ms` (only those still there)."""
        if members:
            at = now_ms() + in_ms
            await self.redis.zadd(keys.SCHEDULES_FIRING, dict.fromkeys(members, at), xx=True)
            self._alarm.notify(at)

    async def fired(self, done: list[tuple[str, int, str]]) -> None:
        """(schedule id, occurrence, task id) whose tasks were submitted."""
        if not done:
            return
        script = self._s["schedule_fired"]

        def build(pipe: Pipeline) -> None:
            for sid, occ, tid in done:
                k = keys.schedule_keys(sid)
                script([k.definition, k.firing], [keys.firing(sid, occ), tid], client=pipe)

        await run_pipeline(self.redis, build, {"schedule_fired": script})
