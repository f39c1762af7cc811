"""The scheduler's transitions on Redis: task records, idempotency keys, the delayed set."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2
from tasktide_services.common.events import now_ms
from tasktide_services.common.lua import LuaFile, Script, load_scripts
from tasktide_services.scheduler import keys

SCRIPTS = LuaFile(Path(__file__).with_name("scripts.lua"), keys.LUA_CONSTANTS)


class SchedulerStore:
    def __init__(self, redis: Redis, expire_seconds: float) -> None:
        self.redis = redis
        self.expire_ms = int(expire_seconds * 1000)
        self._s = load_scripts(redis, SCRIPTS)

    async def claim_idempotency(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        """For each (key, new id): None when the key was free (now taken), else the existing id."""
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, tid in pairs:
                pipe.set(keys.idem(key), tid, nx=True, px=self.expire_ms)
                pipe.get(keys.idem(key))
            res = await pipe.execute()
        out: list[str | None] = []
        for i in range(0, len(res), 2):
            out.append(None if res[i] else res[i + 1].decode())
        return out

    @property
    def scripts(self) -> dict[str, Script]:
        return self._s

    async def save(self, tasks: list[task_pb2.Task], delayed: list[tuple[str, int]]) -> None:
        """Write task records, and add (id, eta ms) to the delayed set, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            self.build_save(pipe, tasks, delayed)
            await pipe.execute()

    def build_save(self, pipe: Pipeline, tasks: list[task_pb2.Task], delayed: list[tuple[str, int]]) -> None:
        """`save` onto a pipeline of the caller's. A delayed task's record is kept for the expiry
        period after its start time, never less: nothing is lost while a task waits."""
        due = dict(delayed)
        now = now_ms()
        for t in tasks:
            waits = max(0, due.get(t.id, now) - now)
            pipe.set(keys.task(t.id), t.SerializeToString(), px=self.expire_ms + waits)
        if delayed:
            pipe.zadd(keys.DELAYED, {tid: eta for tid, eta in delayed})

    async def load(self, task_ids: list[str]) -> list[task_pb2.Task | None]:
        if not task_ids:
            return []
        raw = await self.redis.mget([keys.task(t) for t in task_ids])
        return [task_pb2.Task.FromString(r) if r else None for r in raw]

    async def claim_due(self, now_ms: int, handover_ms: int, limit: int) -> list[str]:
        ids = await self._s["claim_due"](keys.DELAYED_KEYS, [now_ms, now_ms + handover_ms, limit])
        return [i.decode() for i in ids]

    async def handed_over(self, task_ids: list[str]) -> None:
        if task_ids:
            await self.redis.zrem(keys.MOVING, *task_ids)

    async def unschedule(self, task_id: str) -> bool:
        """Remove a task from the delayed set; True if it was waiting there."""
        return bool(await self.redis.zrem(keys.DELAYED, task_id))

    async def rate_slots(self, name: str, now_ms: int, interval_ms: float, count: int) -> int:
        """The first of `count` slots reserved under a rate limit (shared by every scheduler)."""
        return int(await self._s["rate_slots"]([keys.rate(name)], [now_ms, interval_ms, count]))

    async def eta(self, task_id: str) -> int | None:
        score = await self.redis.zscore(keys.DELAYED, task_id)
        return int(score) if score is not None else None
