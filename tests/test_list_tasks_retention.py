"""The visibility index stays bounded: entries older than the retention are trimmed (and their
buckets expire), a bucket holds at most its cap, and TASKTIDE_INDEX=0 writes nothing. The results
store on a Redis of its own, with short settings."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tasktide.v1 import task_pb2
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results.index import Filters
from tasktide_services.results.store import ResultsStore
from tests.processes import own_redis

S = task_pb2
ANY = Filters()


def _now() -> int:
    return int(time.time() * 1000)


def _events(n: int, state: int = S.TASK_STATE_SUCCEEDED, at_ms: int = 0) -> list[task_pb2.TaskEvent]:
    spec = task_pb2.TaskSpec(name="r.add", queue="q")
    return [
        task_pb2.TaskEvent(
            task_id=uuid.uuid4().hex, state=state, at_ms=(at_ms or _now()) + i, name="r.add", queue="q", spec=spec
        )  # type: ignore[arg-type]
        for i in range(n)
    ]


# Each test runs twice: index entries written by their own script calls, and (one Redis server, a
# batch of one task) inside the task's `record` call (store.py).
ONE_NODE = [False]


@pytest.fixture(autouse=True, params=[False, True], ids=["index-apart", "index-in-record"])
def _layout(request: pytest.FixtureRequest) -> None:
    ONE_NODE[0] = request.param


def _run(tmp_path: Path, index: IndexSettings, body: Callable[[ResultsStore, Any], Awaitable[None]]) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                await body(ResultsStore(redis, 600.0, index, one_node=ONE_NODE[0]), redis)
            finally:
                await redis.aclose()

    asyncio.run(main())


async def _listed(store: ResultsStore, filters: Filters = ANY, limit: int = 1000) -> list[task_pb2.TaskResult]:
    page = await store.index.page(store.redis, "default", filters, 0, 0, limit, "", store.get)
    return page.tasks


async def _index_keys(redis: Any) -> list[bytes]:
    return [k async for k in redis.scan_iter("tt:r:ix:*")]


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached"
        await asyncio.sleep(0.05)


def test_retention_trims_old_entries_and_their_buckets_expire(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        old = _events(20)
        await store.record(old)
        assert {r.task_id for r in await _listed(store)} == {e.task_id for e in old}
        assert await _index_keys(redis)

        async def gone() -> bool:
            return not await _index_keys(redis)

        await _eventually(gone)  # the buckets expired: bucket end + retention
        assert await _listed(store) == []
        assert all(r.found for r in await store.get([e.task_id for e in old]))  # results are kept
        new = _events(3)
        await store.record(new)
        assert [r.task_id for r in await _listed(store)] == [e.task_id for e in reversed(new)]

    _run(tmp_path, IndexSettings(retention=1.0, bucket=0.5), body)


def test_entries_past_the_retention_are_trimmed_within_a_bucket(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        old = _events(10)
        await store.record(old)
        (zset,) = [k for k in await _index_keys(redis) if k.endswith(b":z")]
        assert await redis.zcard(zset) == 10
        while _now() <= old[-1].at_ms + 1_000:  # past the retention
            await asyncio.sleep(0.05)
        (last,) = _events(1)
        await store.record([last])  # the next write to the bucket trims what is past retention
        assert await redis.zcard(zset) == 1
        # the entry left, and the field '' that makes the hash a hash table (keys.py)
        assert set(await redis.hkeys(zset[:-1] + b"h")) == {last.task_id.encode(), b""}
        assert await redis.hgetall(zset[:-1] + b"c") == {b"s5": b"1", b"nr.add": b"1"}

    _run(tmp_path, IndexSettings(retention=1.0, bucket=3600.0), body)


def test_a_bucket_keeps_at_most_its_cap_the_newest(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        events = _events(200)
        for i in range(0, 200, 40):
            await store.record(events[i : i + 40])
        (zset,) = [k for k in await _index_keys(redis) if k.endswith(b":z")]
        assert await redis.zcard(zset) == 50
        assert await redis.hlen(zset[:-1] + b"h") == 50 + 1  # and the field '' (keys.py)
        assert [r.task_id for r in await _listed(store)] == [e.task_id for e in reversed(events[-50:])]
        counts = await store.index.counts(store.redis, "default", 0, 0)  # kept with the entries
        assert counts == {"state": {"TASK_STATE_SUCCEEDED": 50}, "name": {"r.add": 50}}

    _run(tmp_path, IndexSettings(max=50, bucket=3600.0), body)


def test_index_off_writes_nothing(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        await store.record(_events(5))
        assert await _index_keys(redis) == []

    _run(tmp_path, IndexSettings(enabled=False), body)


def test_a_task_that_changed_across_buckets_is_listed_once_at_its_latest_state(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        (queued,) = _events(1, S.TASK_STATE_QUEUED, at_ms=_now() - 2_000)
        done = task_pb2.TaskEvent(
            task_id=queued.task_id, state=S.TASK_STATE_FAILED, at_ms=_now(), name="r.add", queue="q", worker_id="w"
        )
        late = task_pb2.TaskEvent(task_id=queued.task_id, state=S.TASK_STATE_RUNNING, at_ms=_now() + 1, queue="q")
        await store.record([queued])
        await store.record([done])
        assert await store.record([late]) == [False]  # refused: the task is final
        listed = await _listed(store)
        assert [(r.task_id, r.state) for r in listed] == [(queued.task_id, S.TASK_STATE_FAILED)]
        assert await _listed(store, Filters(states=frozenset({S.TASK_STATE_QUEUED}))) == []
        assert await _listed(store, Filters(states=frozenset({S.TASK_STATE_RUNNING}))) == []
        assert len(await _listed(store, Filters(worker_id="w"))) == 1
        # Counts are per bucket: the entry left in the first bucket counts there.
        counts = await store.index.counts(store.redis, "default", 0, 0)
        assert counts["state"] == {"TASK_STATE_QUEUED": 1, "TASK_STATE_FAILED": 1}

    _run(tmp_path, IndexSettings(bucket=1.0), body)


def test_a_late_event_in_the_same_batch_as_the_final_one_does_not_hide_the_task(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        (done,) = _events(1, S.TASK_STATE_SUCCEEDED)
        late = task_pb2.TaskEvent(task_id=done.task_id, state=S.TASK_STATE_RUNNING, at_ms=done.at_ms + 1, queue="q")
        assert await store.record([done, late]) == [True, False]
        listed = await _listed(store, Filters(states=frozenset({S.TASK_STATE_SUCCEEDED})))
        assert [r.task_id for r in listed] == [done.task_id]

    _run(tmp_path, IndexSettings(), body)


def test_a_bucket_entries_are_a_hash_table_from_its_first_write(tmp_path: Path) -> None:
    """A compact hash (ziplist/listpack) is scanned on every write: each task's entry would cost
    O(entries) until the bucket held 512. The bucket's first call makes it a hash table."""

    async def body(store: ResultsStore, redis: Any) -> None:
        await store.record(_events(1))
        (entries,) = [k for k in await _index_keys(redis) if k.endswith(b":h")]
        assert await redis.object("encoding", entries) == b"hashtable"
        more = _events(50)
        for e in more:  # one by one, as tasks finish
            await store.record([e])
        assert await redis.object("encoding", entries) == b"hashtable"
        listed = {r.task_id for r in await _listed(store)}
        assert {e.task_id for e in more} <= listed and len(listed) == 51  # the field '' is no task

    _run(tmp_path, IndexSettings(), body)
