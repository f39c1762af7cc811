"""What the registry keeps in Redis is bounded: dead letters by count and age, the queue registry
and the worker entries cleaned of what is stale (worker/housekeeping.py), on a Redis of its own."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.events import now_ms
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker import keys
from tasktide_services.worker.housekeeping import WORKER_STALE_SECONDS, Housekeeping
from tasktide_services.worker.store import RegistryStore
from tests.processes import own_redis


def _tasks(queue: str, n: int) -> list[task_pb2.Task]:
    return [task_pb2.Task(id=uuid.uuid4().hex, spec=task_pb2.TaskSpec(name="t.add", queue=queue)) for _ in range(n)]


async def _bury(store: RegistryStore, queue: str, n: int, at_ms: int) -> list[str]:
    """`n` tasks dead-lettered at `at_ms`: leased with no time left, then reaped at their last delivery."""
    tasks = _tasks(queue, n)
    await store.enqueue(tasks)
    assert len(await store.dispatch(queue, at_ms - 1, 0, n)) == n
    held, _, dead = await store.reap(queue, at_ms, max_deliveries=1)
    assert (held, sorted(dead)) == ([], sorted(t.id for t in tasks))
    return [t.id for t in tasks]


def _run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                await body(RegistryStore(redis), redis)
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_dead_letters_are_capped_by_age_then_count(tmp_path: Path) -> None:
    async def body(store: RegistryStore, redis: Any) -> None:
        q = "dead-q"
        oldest = await _bury(store, q, 2, 1_000)
        older = await _bury(store, q, 2, 2_000)
        newest = await _bury(store, q, 2, 3_000)
        settings = replace(ServerSettings(), dead_max=3, dead_max_age=1.5)
        await Housekeeping(store, settings).run_once(now_ms=3_000)
        kept = [d.task.id for d in await store.list_dead(q, 100)]
        assert sorted(kept) == sorted(older[1:] + newest) or sorted(kept) == sorted(older[:1] + newest)
        stored = {k.decode() for k in await redis.hkeys(keys.queue_keys(q)[1])}
        assert stored == set(kept), "forgotten dead letters leave nothing behind"
        assert not set(oldest) & stored

    _run(tmp_path, body)


def test_an_expired_task_whose_value_does_not_parse_still_goes_back(tmp_path: Path) -> None:
    """The reaper holds an expired task, then releases it: a poison task value is held and released
    like any other (nothing can be recorded of it), not left leased for ever."""

    async def body(store: RegistryStore, redis: Any) -> None:
        q = "poison-q"
        (t,) = _tasks(q, 1)
        await store.enqueue([t])
        assert len(await store.dispatch(q, 999, 0, 1)) == 1  # leased with no time left
        k = keys.queue_keys(q)
        await redis.hset(k.task, t.id, b"100" + b"\x0a\xff\xff\xff")  # a band, then no Task
        held, _, dead = await store.reap(q, 1_000, max_deliveries=5)
        assert dead == [] and [(h.task.id, h.task.spec.queue, h.task.spec.name) for h in held] == [(t.id, q, "")]
        assert await redis.zscore(k.leases, t.id) == held[0].deadline_ms  # the reaper's hold
        async with redis.pipeline(transaction=False) as pipe:
            store.build_requeue(pipe, q, held)
            assert await pipe.execute() == [[1]]
        assert await redis.zscore(k.ready, t.id) is not None
        assert await redis.hget(k.deliveries, t.id) == b"1"  # the expired delivery counts

    _run(tmp_path, body)


def test_empty_unused_queues_and_stale_workers_are_forgotten(tmp_path: Path) -> None:
    async def body(store: RegistryStore, redis: Any) -> None:
        now = now_ms()
        done, waiting, consumed = "q-done", "q-waiting", "q-consumed"
        (t,) = _tasks(done, 1)
        await store.enqueue([t])
        (lease,) = await store.dispatch(done, now, 30_000, 1)
        assert await store.complete([lease.ref()]) == 1
        await store.enqueue(_tasks(waiting, 1))
        fresh = worker_pb2.WorkerInfo(session_id="fresh", queues=[consumed], last_seen_ms=now)
        stale = worker_pb2.WorkerInfo(
            session_id="stale", queues=["q-of-stale"], last_seen_ms=now - int(WORKER_STALE_SECONDS * 1000) - 1
        )
        await store.put_worker(fresh)
        await store.put_worker(stale)
        await store.drain(["fresh", "stale", "ended"])  # drains asked, kept while their sessions last
        await store.resize({"fresh": 3, "stale": 2, "ended": 5})  # and resizes
        assert await store.put_worker(fresh) == (True, 3)
        housekeeping = Housekeeping(store, ServerSettings())
        await housekeeping.run_once(now_ms=now)
        assert [w.session_id for w in await store.workers()] == ["fresh"]
        assert await redis.smembers(keys.DRAINING) == {b"fresh"}
        assert await redis.hgetall(keys.RESIZING) == {b"fresh": b"3"}
        await housekeeping.run_once(now_ms=now)
        assert await store.queues() == sorted([waiting, consumed])
        left = [k for k in keys.queue_keys(done) if await redis.exists(k)]
        assert left == [keys.queue_keys(done).fence], "an idle queue leaves only its fence counter behind"
        # A submission registers a forgotten queue again.
        await store.enqueue(_tasks(done, 1))
        assert done in await store.queues()

    _run(tmp_path, body)


def test_an_unreadable_parked_retry_does_not_hold_back_the_others(tmp_path: Path, caplog: Any) -> None:
    """The reaper hands over next attempts the scheduler never took (:retrying). One that cannot be
    parsed (a poison entry) is logged and left parked; the others in the same queue still come back."""

    async def body(store: RegistryStore, redis: Any) -> None:
        q = "retry-q"
        k = keys.queue_keys(q)
        good = _tasks(q, 2)
        for t in good:
            await redis.hset(k.retrying, t.id, t.SerializeToString())
        await redis.hset(k.retrying, "f" * 32, b"\xff\xff not a task")
        await redis.zadd(k.retry_at, {t.id: 1_000 for t in good} | {"f" * 32: 1_000})
        parked = await store.stuck_retries(q, 2_000)
        assert sorted(t.id for t in parked) == sorted(t.id for t in good)
        assert await redis.hexists(k.retrying, "f" * 32), "the unreadable entry is left where it was"

    _run(tmp_path, body)
    assert any("f" * 32 in r.getMessage() and "cannot be read" in r.getMessage() for r in caplog.records)


def test_a_cancel_kept_with_a_value_that_is_not_a_number_still_reaches_the_heartbeat(tmp_path: Path) -> None:
    """A poison grace in :cancel: the heartbeat that reads it extends the lease and names the Cancel
    (to stop at once), instead of failing on it."""

    async def body(store: RegistryStore, redis: Any) -> None:
        q = "cancel-q"
        (t,) = _tasks(q, 1)
        await store.enqueue([t])
        (lease,) = await store.dispatch(q, now_ms(), 30_000, 1)
        await redis.hset(keys.queue_keys(q).cancel, t.id, "soon")
        extended = await store.extend([lease.ref()], now_ms() + 60_000)
        assert (extended.stale, extended.cancel) == ([], {t.id: 0.0})

    _run(tmp_path, body)
