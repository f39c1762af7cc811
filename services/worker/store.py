"""The registry's transitions on Redis: ready queues, leases with fencing tokens, redelivery.

Keys are listed in keys.py and every transition is one Lua script in scripts.lua.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.lua import AnyPipeline, LuaFile, Script, load_scripts, preload, run_pipeline
from tasktide_services.worker import keys

log = logging.getLogger("tasktide.registry")


@dataclass
class Leased:
    """A lease as the session that took it knows it (session.py keeps them while they are held)."""

    task: task_pb2.Task
    token: int
    delivery: int
    deadline_ms: int  # as the dispatch script set it, then as the session's heartbeats extend it
    cancel_sent: bool = False  # the session sent its worker a CancelSignal for it

    def ref(self) -> worker_pb2.LeaseRef:
        return worker_pb2.LeaseRef(task_id=self.task.id, queue=self.task.spec.queue, lease_token=self.token)


class Reaped(NamedTuple):
    """The reply of the `reap` script on one queue: the tasks the reaper holds (their leases the
    reaper's), those to queue again and those to end as cancelled (cancelled.py), and the ids it
    dead-lettered."""

    requeue: list[Leased]
    cancel: list[Leased]
    dead: list[str]


def reaped(reply: Any, hold_deadline_ms: int, queue: str) -> Reaped:
    """The reply of `reap` on `queue` (Reaped). A task value that does not parse still goes back
    (as a task of that id and queue alone: nothing is recorded of it)."""
    n = int(reply[0])
    out = Reaped([], [], [])
    for i in range(1, 1 + 5 * n, 5):
        tid = reply[i].decode()
        try:
            task = keys.task_of(reply[i + 3])
        except DecodeError:
            log.warning("task %s of queue %s does not parse; queued again as it is", tid, queue)
            task = task_pb2.Task(id=tid, spec=task_pb2.TaskSpec(queue=queue))
        task.id, task.spec.queue = tid, queue
        held = Leased(task, int(reply[i + 1]), int(reply[i + 2]), hold_deadline_ms)
        (out.cancel if int(reply[i + 4]) else out.requeue).append(held)
    out.dead.extend(r.decode() for r in reply[1 + 5 * n :])
    return out


class Released(NamedTuple):
    """The reply of `release`: how many tasks went back, and the leases it kept because a Cancel
    was asked for their tasks (the caller ends them: cancelled.py)."""

    requeued: int
    cancel: list[worker_pb2.LeaseRef]


def release_reply(reply: Any, leases: list[worker_pb2.LeaseRef]) -> Released:
    """The reply of `release` for `leases` (of one queue or more: their ids are unique)."""
    kept = {r.decode() if isinstance(r, bytes) else str(r) for r in reply[1:]}
    return Released(int(reply[0]), [r for r in leases if r.task_id in kept])


class Asked(NamedTuple):
    """What a DrainWorker or a ResizeWorker asked of a session and is kept for it (put_worker)."""

    drain: bool
    concurrency: int  # 0: no resize asked


class Extended(NamedTuple):
    """The reply of `extend`: task ids whose token is stale, and task id -> grace seconds of a
    Cancel asked for a current lease (its worker may have missed the signal)."""

    stale: list[str]
    cancel: dict[str, float]


def _grace(value: bytes) -> float:
    """A Cancel's grace seconds as `revoke` kept them; 0 (stop at once) for a value that is not a
    number (a poison entry must not fail the heartbeat that reads it)."""
    try:
        grace = float(value)
    except ValueError:
        return 0.0
    return grace if grace >= 0 else 0.0


def _pairs(leases: list[worker_pb2.LeaseRef]) -> dict[str, list[str]]:
    by_queue: dict[str, list[str]] = defaultdict(list)
    for ref in leases:
        by_queue[ref.queue] += [ref.task_id, str(ref.lease_token)]
    return by_queue


SCRIPTS = LuaFile(Path(__file__).with_name("scripts.lua"), keys.LUA_CONSTANTS)


def build_enqueue(pipe: AnyPipeline, scripts: Mapping[str, Script], tasks: list[task_pb2.Task]) -> None:
    """RegistryStore.build_enqueue with the registry's scripts given (loaded once by the caller);
    the enqueue of a submission made in the caller's process (scheduler/direct.py)."""
    by_queue: dict[str, list[bytes | str | int]] = defaultdict(list)
    for t in tasks:
        by_queue[t.spec.queue] += [t.id, keys.task_value(t)]
    for q, argv in by_queue.items():
        pipe.sadd(keys.QUEUES, q)
        scripts["enqueue"](keys.queue_keys(q), [q, keys.NOTIFY, *argv], client=pipe)


class RegistryStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._s = load_scripts(redis, SCRIPTS)

    @property
    def scripts(self) -> dict[str, Script]:
        return self._s

    async def prepare(self) -> None:
        """At startup: loads the scripts into Redis (lua.preload)."""
        await preload(self.redis, self._s)

    async def enqueue(self, tasks: list[task_pb2.Task]) -> int:
        results = await run_pipeline(self.redis, lambda pipe: self.build_enqueue(pipe, tasks), self._s)
        return sum(int(r) for r in results[1::2])

    def build_enqueue(self, pipe: Pipeline, tasks: list[task_pb2.Task]) -> None:
        """`enqueue` onto a pipeline of the caller's: per queue, an SADD reply then the count added."""
        build_enqueue(pipe, self._s, tasks)

    async def dispatch(self, queue: str, now_ms: int, lease_ms: int, count: int) -> list[Leased]:
        return leased(await self._s["dispatch"](keys.queue_keys(queue), [now_ms, lease_ms, count]), now_ms + lease_ms)

    def build_enqueue_dispatch(
        self, pipe: Pipeline, queue: str, tasks: list[task_pb2.Task], now_ms: int, lease_ms: int, count: int
    ) -> None:
        """`build_enqueue` then a dispatch of `count` tasks for tasks of one queue, as one script (a task the
        queue hands out at once never enters its ready set): an SADD reply, then the script's,
        which `leased()` reads."""
        argv: list[bytes | str | int] = [now_ms + lease_ms, count, queue, keys.NOTIFY]
        for t in tasks:
            argv += [t.id, keys.task_value(t)]
        pipe.sadd(keys.QUEUES, queue)
        self._s["enqueue_dispatch"](keys.queue_keys(queue), argv, client=pipe)

    async def extend(self, leases: list[worker_pb2.LeaseRef], deadline_ms: int) -> Extended:
        """Extend current leases: the task ids whose token is stale, and the grace seconds of a
        Cancel asked for the others (Extended)."""
        out = Extended([], {})
        for q, argv in _pairs(leases).items():
            stale, asked = await self._s["extend"](keys.queue_keys(q), [deadline_ms, *argv])
            out.stale.extend(r.decode() for r in stale)
            for i in range(0, len(asked), 2):
                out.cancel[asked[i].decode()] = _grace(asked[i + 1])
        return out

    async def complete(self, leases: list[worker_pb2.LeaseRef]) -> int:
        n = 0
        for q, argv in _pairs(leases).items():
            n += int(await self._s["complete"](_complete_keys(q), argv))
        return n

    def build_complete(self, pipe: Pipeline, leases: list[worker_pb2.LeaseRef]) -> None:
        """`complete` onto a pipeline of the caller's: one reply per queue."""
        for q, argv in _pairs(leases).items():
            self._s["complete"](_complete_keys(q), argv, client=pipe)

    async def release(self, leases: list[worker_pb2.LeaseRef]) -> Released:
        """Leased tasks given back unstarted put back at the front of their band (their delivery
        does not count), but those a Cancel was asked for, which stay leased (Released)."""
        n, cancel = 0, []
        for q, argv in _pairs(leases).items():
            reply = release_reply(await self._s["release"](keys.queue_keys(q), [q, keys.NOTIFY, 0, *argv]), leases)
            n += reply.requeued
            cancel += reply.cancel
        return Released(n, cancel)

    def build_requeue(self, pipe: Pipeline, queue: str, held: list[Leased]) -> None:
        """`release` (the delivery counted) of the tasks the reaper holds in one queue, onto a
        pipeline of the caller's: one reply, which `release_reply` reads."""
        argv = _pairs([h.ref() for h in held])[queue]
        self._s["release"](keys.queue_keys(queue), [queue, keys.NOTIFY, 1, *argv], client=pipe)

    async def queues(self) -> list[str]:
        members: Any = await self.redis.smembers(keys.QUEUES)
        return sorted(q.decode() for q in members)

    async def reap(
        self, queue: str, now_ms: int, max_deliveries: int, limit: int = 1000, hold_ms: int = 10_000
    ) -> Reaped:
        """The `reap` script on one queue (the reaper runs it on many per round trip: reaper.py)."""
        deadline = now_ms + hold_ms
        res = await self._s["reap"](keys.queue_keys(queue), [now_ms, max_deliveries, limit, deadline])
        return reaped(res, deadline, queue)

    async def dead_task(self, queue: str, task_id: str) -> task_pb2.Task | None:
        value = await self.redis.hget(keys.queue_keys(queue).task, task_id)
        return keys.task_of(value) if value else None

    async def stats(self) -> list[worker_pb2.QueueStat]:
        qs = await self.queues()
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in qs:
                k = keys.queue_keys(q)
                pipe.zcard(k.ready)
                pipe.zcard(k.leases)
                pipe.zcard(k.dead)
                pipe.exists(k.paused)
            res = await pipe.execute()
        return [
            worker_pb2.QueueStat(
                queue=q, ready=res[4 * i], leased=res[4 * i + 1], dead=res[4 * i + 2], paused=bool(res[4 * i + 3])
            )
            for i, q in enumerate(qs)
        ]

    async def put_worker(self, info: worker_pb2.WorkerInfo) -> Asked:
        """Write (or refresh) a worker entry; its queues are registered, so a queue with a consumer
        is never one that housekeeping forgets. Returns what was asked of the session and kept
        (keys.DRAINING, keys.RESIZING)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.WORKERS, info.session_id, info.SerializeToString())
            if info.queues:
                pipe.sadd(keys.QUEUES, *info.queues)
            pipe.sismember(keys.DRAINING, info.session_id)
            pipe.hget(keys.RESIZING, info.session_id)
            replies = await pipe.execute()
        return Asked(drain=bool(replies[-2]), concurrency=int(replies[-1] or 0))

    async def drain(self, session_ids: list[str]) -> None:
        """Ask these sessions to drain: kept until they end (keys.DRAINING), and published for the
        replicas they are connected to."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.DRAINING, *session_ids)
            pipe.publish(keys.DRAIN, " ".join(session_ids))
            await pipe.execute()

    async def resize(self, concurrency: dict[str, int]) -> None:
        """Ask these sessions (id -> concurrency) to resize: kept until they end (keys.RESIZING), and
        published for the replicas they are connected to."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.RESIZING, mapping={sid: str(n) for sid, n in concurrency.items()})
            pipe.publish(keys.RESIZE, " ".join(f"{sid}={n}" for sid, n in concurrency.items()))
            await pipe.execute()

    async def drop_worker(self, session_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hdel(keys.WORKERS, session_id)
            pipe.srem(keys.DRAINING, session_id)
            pipe.hdel(keys.RESIZING, session_id)
            await pipe.execute()

    async def workers(self) -> list[worker_pb2.WorkerInfo]:
        raw = await self.redis.hvals(keys.WORKERS)
        return [worker_pb2.WorkerInfo.FromString(v) for v in raw]

    async def hold(self, leases: list[worker_pb2.LeaseRef], deadline_ms: int) -> list[task_pb2.Task | None]:
        """Per lease, in order: its task if the token is current (lease extended), else None."""
        found: dict[tuple[str, int], task_pb2.Task] = {}
        for q, argv in _pairs(leases).items():
            values = await self._s["hold"](keys.queue_keys(q), [deadline_ms, *argv])
            for i, v in enumerate(values):
                if v:
                    found[(argv[2 * i], int(argv[2 * i + 1]))] = keys.task_of(v)
        return [found.get((r.task_id, r.lease_token)) for r in leases]

    async def bury(self, leases: list[worker_pb2.LeaseRef], now_ms: int) -> int:
        n = 0
        for q, argv in _pairs(leases).items():
            n += int(await self._s["bury"](keys.queue_keys(q), [now_ms, *argv]))
        return n

    async def revoke(self, queue: str, task_ids: list[str], grace_seconds: float = 0) -> list[worker_pb2.RevokeResult]:
        codes = await self._s["revoke"](keys.queue_keys(queue), [grace_seconds, *task_ids])
        return [cast(worker_pb2.RevokeResult, int(x)) for x in codes]  # the enum's numbers

    async def set_paused(self, queue: str, paused: bool) -> None:
        key = keys.queue_keys(queue).paused
        if paused:
            await self.redis.set(key, "1")
            await self.redis.sadd(keys.QUEUES, queue)
        else:
            await self.redis.delete(key)
            await self.redis.publish(keys.NOTIFY, queue)

    async def locate(self, queue: str, task_id: str) -> worker_pb2.LocateResponse:
        k = keys.queue_keys(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrank(k.ready, task_id)
            pipe.hexists(k.tokens, task_id)
            pipe.zscore(k.dead, task_id)
            pipe.exists(k.paused)
            pipe.hexists(k.cancel, task_id)
            rank, leased, dead, paused, cancel = await pipe.execute()
        return worker_pb2.LocateResponse(
            ready=rank is not None,
            ahead=rank or 0,
            leased=bool(leased),
            dead=dead is not None,
            paused=bool(paused),
            cancel_asked=bool(cancel),
        )

    async def list_dead(self, queue: str, limit: int) -> list[worker_pb2.DeadTask]:
        k = keys.queue_keys(queue)
        rows: Any = await self.redis.zrange(k.dead, 0, limit - 1, withscores=True)
        if not rows:
            return []
        values = await self.redis.hmget(k.task, [r[0] for r in rows])
        return [
            worker_pb2.DeadTask(task=keys.task_of(v), dead_ms=int(score))
            for (_, score), v in zip(rows, values, strict=True)
            if v
        ]

    async def requeue_dead(self, queue: str, task_ids: list[str]) -> int:
        """Dead tasks go back to the ready queue as a first attempt."""
        k = keys.queue_keys(queue)
        if not task_ids:
            dead: Any = await self.redis.zrange(k.dead, 0, -1)
            task_ids = [i.decode() for i in dead]
        if not task_ids:
            return 0
        argv: list[bytes | str | int] = []
        for tid, v in zip(task_ids, await self.redis.hmget(k.task, task_ids), strict=True):
            if v:
                task = keys.task_of(v)
                task.attempt = 0
                task.state = task_pb2.TASK_STATE_QUEUED
                argv += [tid, keys.task_value(task)]
        return int(await self._s["requeue_dead"](k, [queue, keys.NOTIFY, *argv]))

    async def retire(
        self, retries: list[tuple[worker_pb2.LeaseRef, task_pb2.Task]], now_ms: int
    ) -> tuple[list[str], list[str]]:
        """End the leases of attempts that asked for a retry; their next attempts wait in :retrying.
        Returns (the ids retired, the ids of tasks a Cancel was asked for: their leases kept, for
        the caller to end them cancelled)."""
        by_queue: dict[str, list[bytes | str | int]] = defaultdict(list)
        for r, task in retries:
            by_queue[r.queue] += [r.task_id, str(r.lease_token), task.SerializeToString()]
        retired: list[str] = []
        kept: list[str] = []
        for q, argv in by_queue.items():
            done, cancel = await self._s["retire"](keys.queue_keys(q), [now_ms, *argv])
            retired += [i.decode() for i in done]
            kept += [i.decode() for i in cancel]
        return retired, kept

    async def retried(self, queue: str, task_ids: list[str]) -> list[str]:
        """The scheduler holds these next attempts now. Returns the ids of those a Cancel was asked
        for while they were parked (their Cancel kept in :cancel until `forget_cancels`)."""
        if not task_ids:
            return []
        return [i.decode() for i in await self._s["retried"](keys.queue_keys(queue), task_ids)]

    async def forget_cancels(self, queue: str, task_ids: list[str]) -> None:
        """The Cancels of these tasks were handed on (to the scheduler, which holds them now)."""
        if task_ids:
            await self.redis.hdel(keys.queue_keys(queue).cancel, *task_ids)

    async def stuck_retries(self, queue: str, before_ms: int) -> list[task_pb2.Task]:
        """Next attempts parked in :retrying since before `before_ms` (the scheduler never took
        them). One that cannot be read is logged and left there: the others are still handed over."""
        k = keys.queue_keys(queue)
        ids: Any = await self.redis.zrangebyscore(k.retry_at, "-inf", before_ms, start=0, num=500)
        if not ids:
            return []
        out: list[task_pb2.Task] = []
        for tid, value in zip(ids, await self.redis.hmget(k.retrying, ids), strict=True):
            if not value:
                continue
            try:
                out.append(task_pb2.Task.FromString(value))
            except DecodeError:
                name = tid.decode() if isinstance(tid, bytes) else tid
                log.warning("queue %s: the next attempt of task %s cannot be read; it stays parked", queue, name)
        return out

    async def trim_dead(self, queue: str, before_ms: int, keep: int, limit: int = 1000) -> int:
        """Forget dead tasks of `queue` dead before `before_ms`, then the oldest beyond `keep`."""
        return int(await self._s["trim_dead"](keys.queue_keys(queue), [before_ms, keep, limit]))

    async def forget_if_idle(self, queue: str) -> bool:
        """Drop `queue` from the registry of queues if it holds nothing. Put back at once if a task
        arrived meanwhile: an enqueue adds the queue before its task, so either the second look
        sees the task or the queue was added after it was removed."""
        if not int(await self._s["forget_idle"](keys.queue_keys(queue), [])):
            return False
        await self.redis.srem(keys.QUEUES, queue)
        if not int(await self._s["forget_idle"](keys.queue_keys(queue), [])):
            await self.redis.sadd(keys.QUEUES, queue)
            return False
        return True

    async def drop_stale_workers(self, seen_before_ms: int) -> int:
        """Forget worker entries not refreshed since `seen_before_ms` (their registry replica died),
        and the drains and resizes asked of sessions that have no entry any more."""
        raw: Any = await self.redis.hgetall(keys.WORKERS)
        stale = [sid for sid, v in raw.items() if worker_pb2.WorkerInfo.FromString(v).last_seen_ms < seen_before_ms]
        if stale:
            await self.redis.hdel(keys.WORKERS, *stale)
        draining: Any = await self.redis.smembers(keys.DRAINING)
        gone = [sid for sid in draining if sid not in raw or sid in stale]
        if gone:
            await self.redis.srem(keys.DRAINING, *gone)
        resizing: Any = await self.redis.hkeys(keys.RESIZING)
        gone = [sid for sid in resizing if sid not in raw or sid in stale]
        if gone:
            await self.redis.hdel(keys.RESIZING, *gone)
        return len(stale)

    async def find(self, task_id: str) -> tuple[task_pb2.Task | None, bool]:
        """A task held in any queue, by id; and whether it is waiting in its ready queue."""
        qs = await self.queues()
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in qs:
                k = keys.queue_keys(q)
                pipe.hget(k.task, task_id)
                pipe.zscore(k.ready, task_id)
            rows = await pipe.execute(raise_on_error=False)
        for i in range(len(qs)):
            value, score = rows[2 * i], rows[2 * i + 1]
            if isinstance(value, Exception) or isinstance(score, Exception):
                # A key of the wrong type (a poison entry) fails its own queue only.
                log.warning("reading task %s in queue %s failed: %s", task_id, qs[i], value or score)
                continue
            if value:
                return keys.task_of(value), score is not None
        return None, False


def leased(flat: list[Any], deadline_ms: int) -> list[Leased]:
    """The reply of `dispatch`, called with now ms and lease ms adding up to `deadline_ms`."""
    out = []
    for i in range(0, len(flat), 4):
        task = keys.task_of(flat[i + 3])
        out.append(Leased(task, int(flat[i + 1]), int(flat[i + 2]), deadline_ms))
    return out


def _complete_keys(q: str) -> list[str]:
    """complete's KEYS: the queue's keys up to :cancel, all it touches (scripts.lua). Six, not
    eleven, for the call every task makes: each key costs Redis a parsed string and a Lua string."""
    return list(keys.queue_keys(q))[:6]
