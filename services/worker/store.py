"""The registry's transitions on Redis: ready queues, leases with fencing tokens, redelivery.

Keys are listed in keys.py and every transition is one Lua script in scripts.lua.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.lua import load_scripts
from tasktide_services.worker import keys


@dataclass(frozen=True)
class Leased:
    task: task_pb2.Task
    token: int
    delivery: int


def _pairs(leases: list[worker_pb2.LeaseRef]) -> dict[str, list[str]]:
    by_queue: dict[str, list[str]] = defaultdict(list)
    for ref in leases:
        by_queue[ref.queue] += [ref.task_id, str(ref.lease_token)]
    return by_queue


class RegistryStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._s = load_scripts(redis, Path(__file__).with_name("scripts.lua"))

    async def enqueue(self, tasks: list[task_pb2.Task]) -> int:
        by_queue: dict[str, list[bytes | str | int]] = defaultdict(list)
        for t in tasks:
            by_queue[t.spec.queue] += [t.id, keys.band(t.spec.priority), t.SerializeToString()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for q, argv in by_queue.items():
                pipe.sadd(keys.QUEUES, q)
                await self._s["enqueue"](keys.queue_keys(q), [q, keys.NOTIFY, *argv], client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results[1::2])

    async def dispatch(self, queue: str, now_ms: int, lease_ms: int, count: int) -> list[Leased]:
        flat = await self._s["dispatch"](keys.queue_keys(queue), [now_ms, lease_ms, count])
        out = []
        for i in range(0, len(flat), 4):
            task = task_pb2.Task.FromString(flat[i + 3][3:])
            out.append(Leased(task, int(flat[i + 1]), int(flat[i + 2])))
        return out

    async def extend(self, leases: list[worker_pb2.LeaseRef], deadline_ms: int) -> list[str]:
        """Extend current leases; returns the task ids whose token is stale."""
        stale: list[str] = []
        for q, argv in _pairs(leases).items():
            res = await self._s["extend"](keys.queue_keys(q), [deadline_ms, *argv])
            stale += [r.decode() if isinstance(r, bytes) else r for r in res]
        return stale

    async def complete(self, leases: list[worker_pb2.LeaseRef]) -> int:
        n = 0
        for q, argv in _pairs(leases).items():
            n += int(await self._s["complete"](keys.queue_keys(q), argv))
        return n

    async def release(self, leases: list[worker_pb2.LeaseRef]) -> int:
        n = 0
        for q, argv in _pairs(leases).items():
            n += int(await self._s["release"](keys.queue_keys(q), [q, keys.NOTIFY, *argv]))
        return n

    async def queues(self) -> list[str]:
        return sorted(q.decode() for q in await self.redis.smembers(keys.QUEUES))

    async def reap(self, queue: str, now_ms: int, max_deliveries: int, limit: int = 1000) -> tuple[int, list[str]]:
        res = await self._s["reap"](keys.queue_keys(queue), [queue, keys.NOTIFY, now_ms, max_deliveries, limit])
        return int(res[0]), [r.decode() for r in res[1:]]

    async def dead_task(self, queue: str, task_id: str) -> task_pb2.Task | None:
        value = await self.redis.hget(keys.queue_keys(queue)[1], task_id)
        return task_pb2.Task.FromString(value[3:]) if value else None

    async def stats(self) -> list[worker_pb2.QueueStat]:
        qs = await self.queues()
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in qs:
                k = keys.queue_keys(q)
                pipe.zcard(k[0])
                pipe.zcard(k[2])
                pipe.zcard(k[6])
            res = await pipe.execute()
        return [
            worker_pb2.QueueStat(queue=q, ready=res[3 * i], leased=res[3 * i + 1], dead=res[3 * i + 2])
            for i, q in enumerate(qs)
        ]

    async def put_worker(self, info: worker_pb2.WorkerInfo) -> None:
        await self.redis.hset(keys.WORKERS, info.session_id, info.SerializeToString())

    async def drop_worker(self, session_id: str) -> None:
        await self.redis.hdel(keys.WORKERS, session_id)

    async def workers(self) -> list[worker_pb2.WorkerInfo]:
        raw = await self.redis.hvals(keys.WORKERS)
        return [worker_pb2.WorkerInfo.FromString(v) for v in raw]

    async def leased_tasks(self, leases: list[worker_pb2.LeaseRef]) -> list[task_pb2.Task]:
        """The task records held for these leases (for retries and event names)."""
        if not leases:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for ref in leases:
                pipe.hget(keys.queue_keys(ref.queue)[1], ref.task_id)
            raw = await pipe.execute()
        return [task_pb2.Task.FromString(v[3:]) for v in raw if v]
