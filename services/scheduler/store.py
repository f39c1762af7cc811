"""The scheduler's transitions on Redis: task records, idempotency keys, the delayed set.

Nothing is lost to time: the record of a task waiting in the delayed set has no expiry; it is
given one (the result expiry) when the task leaves the set, handed to the registry or cancelled.

An idempotency key is claimed before its task is written, as a pending claim that lapses after
CLAIM_MS (`claim_idempotency`). The write that accepts the task confirms it in the same round trip
(`build_confirm`, script idem_confirm, run after the write's other commands, on a cluster too), and
a failed write lets it go (`release_idempotency`), so a key never names a task that was not written
for longer than CLAIM_MS. A write whose answer was lost (the connection to Redis dropped or timed
out) may have been applied: then only a pending claim is let go, and a key the write confirmed
keeps naming its task. On one Redis server a write under keys is one transaction (MULTI/EXEC), so
it was applied whole or not at all: a connection that breaks while the write is being sent leaves
no task behind that runs while its key is let go.

A task is in :moving while it is handed to the registry: taken there from the delayed set when due
(`claim_due`), or put there with its record by a writer that confirms a task's key before the
registry has the task (writing.py, `PeerWriter`). One left there past its deadline (HANDOVER_MS: the
scheduler that was handing it over died; ENQUEUE_MS for one put there by `save`) is due again for
any replica's pump.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, cast

from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2
from tasktide_services.common.alarm import Alarm
from tasktide_services.common.events import now_ms
from tasktide_services.common.lua import LuaFile, Script, load_scripts, preload, run_pipeline
from tasktide_services.scheduler import keys

# A key's confirmation follows the write of its task, on a cluster too (lua.py, `LuaFile.last`).
SCRIPTS = LuaFile(Path(__file__).with_name("scripts.lua"), keys.LUA_CONSTANTS, frozenset({"idem_confirm"}))
CLAIM_MS = 15_000  # a claimed key whose task was neither written nor refused is free again after this
PENDING = "?"  # prefix of a claim whose task is being written (keys.idem)
HANDOVER_MS = 30_000  # a task claimed from :delayed into :moving longer than this is handed over again
ENQUEUE_MS = 5_000  # the same for a task `save` puts there while its enqueue call is under way

log = logging.getLogger("tasktide.scheduler")


class Claimed(NamedTuple):
    """What `claim_due` took into :moving."""

    ids: list[str]  # the stuck tasks first, then the due ones
    stuck: int  # how many of `ids` were stuck (left past their hand-over deadline)
    at: float  # when (Unix ms) something else becomes due: math.inf, none; `now_ms`: go again


class Claim(NamedTuple):
    """An idempotency key claimed for a task being written."""

    key: str
    task_id: str
    keep_ms: int  # how long the key lasts once the task is written


class SchedulerStore:
    def __init__(self, redis: Redis, expire_seconds: float) -> None:
        self.redis = redis
        self.expire_ms = int(expire_seconds * 1000)
        self._s = load_scripts(redis, SCRIPTS)
        # Wake the delayed pump and the schedule loop of this process early (common/alarm.py).
        self.delayed_alarm = Alarm()
        self.schedule_alarm = Alarm()

    async def prepare(self) -> None:
        """At startup: loads the scripts into Redis (lua.preload), the schedules' and the
        workflows' too (schedule_store.py, workflow_store.py run this store's scripts)."""
        await preload(self.redis, self._s)

    async def claim_idempotency(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        """For each (key, new id): None when the key was free (now claimed, pending until the task
        is written), else what it holds: the id of a written task, or PENDING + the id of a task
        another submission is writing (which may never be written, if that writer died)."""
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, tid in pairs:
                pipe.set(keys.idem(key), PENDING + tid, nx=True, px=CLAIM_MS)
                pipe.get(keys.idem(key))
            res = await pipe.execute()
        out: list[str | None] = []
        for i in range(0, len(res), 2):
            held = res[i + 1]
            out.append(None if res[i] else held.decode() if held is not None else "")
        return out

    async def held_idempotency(self, idem_keys: list[str]) -> list[str]:
        """What each key holds now ("" for a free key)."""
        values = await self.redis.mget([keys.idem(k) for k in idem_keys])
        return [v.decode() if isinstance(v, bytes) else v or "" for v in values]

    def build_confirm(self, pipe: Pipeline, claims: list[Claim]) -> None:
        """Onto the pipeline that writes the claimed tasks: their keys now name them for good."""
        for c in claims:
            self._s["idem_confirm"]([keys.idem(c.key)], [c.task_id, PENDING + c.task_id, c.keep_ms], client=pipe)

    async def release_idempotency(self, claims: list[Claim], *, pending_only: bool = False) -> None:
        """The tasks of these claims were not written: their keys are free again. `pending_only`:
        whether they were written is not known (Redis's answer was lost), so a key the write
        confirmed, which names its task, is kept; only a claim still pending is let go."""
        await self.release_each([(c, pending_only) for c in claims])

    async def release_each(self, releases: list[tuple[Claim, bool]]) -> None:
        """`release_idempotency` of each claim with its own `pending_only`, in one round trip."""
        if not releases:
            return

        def build(pipe: Pipeline) -> None:
            for c, pending_only in releases:
                named = "" if pending_only else c.task_id  # "": no key holds it
                self._s["idem_release"]([keys.idem(c.key)], [named, PENDING + c.task_id], client=pipe)

        await run_pipeline(self.redis, build, self._s)

    @property
    def scripts(self) -> dict[str, Script]:
        return self._s

    async def save(
        self,
        tasks: list[task_pb2.Task],
        delayed: list[tuple[str, int]],
        claims: list[Claim] | None = None,
        moving: list[str] | None = None,
    ) -> None:
        """Write task records, add (id, eta ms) to the delayed set, put the `moving` ids in
        :moving (their records among `tasks`; see `forget_moving`) and confirm the idempotency keys
        of these tasks, in one round trip; with keys, as one transaction (module doc)."""

        def build(pipe: Pipeline) -> None:
            self.build_save(pipe, tasks, delayed, moving or ())
            self.build_confirm(pipe, claims or [])

        await run_pipeline(self.redis, build, self._s, atomic=bool(claims))

    def build_save(
        self, pipe: Pipeline, tasks: list[task_pb2.Task], delayed: list[tuple[str, int]], moving: Sequence[str] = ()
    ) -> None:
        """`save` onto a pipeline of the caller's. A record of a task put in the delayed set or in
        :moving has no expiry until the task leaves it (`handed_over`, `unschedule`, `forget_moving`)."""
        kept = {tid for tid, _ in delayed}.union(moving)
        for t in tasks:
            pipe.set(keys.task(t.id), t.SerializeToString(), px=None if t.id in kept else self.expire_ms)
        if delayed:
            pipe.zadd(keys.DELAYED, {tid: eta for tid, eta in delayed})
            self.delayed_alarm.notify(min(eta for _, eta in delayed))
        if moving:
            deadline = now_ms() + ENQUEUE_MS
            pipe.zadd(keys.MOVING, dict.fromkeys(moving, deadline))

    async def due_again(self, task_ids: list[str], in_ms: int) -> None:
        """Tasks of :moving to hand over again in `in_ms` (only those still there)."""
        if task_ids:
            at = now_ms() + in_ms
            await self.redis.zadd(keys.MOVING, dict.fromkeys(task_ids, at), xx=True)
            self.delayed_alarm.notify(at)

    async def forget_moving(self, task_ids: list[str]) -> None:
        """Tasks `save` put in :moving, handed to the registry or refused by it: their places and
        records are deleted (the registry keeps what it runs)."""
        if task_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.MOVING, *task_ids)
                for tid in task_ids:  # one key per command: records lie in other slots of a cluster
                    pipe.delete(keys.task(tid))
                await pipe.execute()

    async def load(self, task_ids: list[str]) -> list[task_pb2.Task | None]:
        """The records of these tasks; None for one that is missing (or unreadable: logged)."""
        if not task_ids:
            return []
        raw = await self.redis.mget([keys.task(t) for t in task_ids])
        out: list[task_pb2.Task | None] = []
        for tid, r in zip(task_ids, raw, strict=True):
            try:
                out.append(task_pb2.Task.FromString(r) if r else None)
            except DecodeError:
                log.error("the record of task %s cannot be read; it is treated as missing", tid)
                out.append(None)
        return out

    async def claim_due(self, now_ms: int, deadline: int, limit: int) -> Claimed:
        """The tasks to hand to the registry now (in :moving, with the hand-over deadline
        `deadline`, Unix ms): the stuck ones first, then the due ones (scripts.lua, claim_due)."""
        nxt, stuck, *ids = await self._s["claim_due"](keys.DELAYED_KEYS, [now_ms, deadline, limit])
        at = float(nxt) if nxt else (now_ms if len(ids) >= limit else math.inf)
        return Claimed([i.decode() for i in ids], int(stuck), at)

    async def handing_over(self, task_id: str) -> bool:
        """Whether the task is in :moving: taken from the delayed set (or admitted under a key) and
        being handed to the registry, in neither's queue until the registry answers."""
        return await self.redis.zscore(keys.MOVING, task_id) is not None

    async def moving_at(self, deadline: int) -> list[str]:
        """The tasks of :moving whose hand-over deadline is `deadline` (one claim's, owed.py)."""
        found = await self.redis.zrangebyscore(keys.MOVING, deadline, deadline)
        return [cast(bytes, m).decode() for m in found]

    async def handed_over(self, task_ids: list[str]) -> None:
        """These tasks of :moving are the registry's now: their records expire with the results."""
        if task_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.MOVING, *task_ids)
                for tid in task_ids:
                    pipe.pexpire(keys.task(tid), self.expire_ms)
                await pipe.execute()

    async def started_elsewhere(self, task_ids: list[str]) -> None:
        """Stuck tasks of :moving that started after all (the registry had them): they leave
        :moving, and their records expire with the results, but for a task that waits in the
        delayed set again (a retry of it: its record lives until it is due)."""
        if not task_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.MOVING, *task_ids)
            pipe.zmscore(keys.DELAYED, task_ids)
            _, scores = await pipe.execute()
        done = [tid for tid, score in zip(task_ids, scores, strict=True) if score is None]
        if done:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tid in done:
                    pipe.pexpire(keys.task(tid), self.expire_ms)
                await pipe.execute()

    async def unschedule(self, task_id: str) -> bool:
        """Remove a task from the delayed set; True if it was waiting there (its record then
        expires with the results)."""
        if not await self.redis.zrem(keys.DELAYED, task_id):
            return False
        await self.redis.pexpire(keys.task(task_id), self.expire_ms)
        return True

    async def rate_slots(self, name: str, now_ms: int, interval_ms: float, count: int) -> int:
        """The first of `count` slots reserved under a rate limit (shared by every scheduler)."""
        return int(await self._s["rate_slots"]([keys.rate(name)], [now_ms, interval_ms, count]))

    async def eta(self, task_id: str) -> int | None:
        score = await self.redis.zscore(keys.DELAYED, task_id)
        return int(score) if score is not None else None
