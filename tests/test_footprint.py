"""What a task's life costs Redis, counted with INFO commandstats on a Redis of its own (the
commands a script runs count too): a regression guard under `python -m bench --only footprint`."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from tasktide.v1 import task_pb2
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results import keys
from tasktide_services.results.store import ResultsStore
from tests.processes import commands_served, own_redis

S = task_pb2


def _life(task_id: str) -> list[task_pb2.TaskEvent]:
    """QUEUED (with the spec), RUNNING and SUCCEEDED: what a task run at once records, in one call."""
    spec = task_pb2.TaskSpec(name="f.add", queue="q")
    base = {"task_id": task_id, "name": "f.add", "queue": "q", "at_ms": 1}
    return [
        task_pb2.TaskEvent(state=S.TASK_STATE_QUEUED, spec=spec, **base),  # type: ignore[arg-type]
        task_pb2.TaskEvent(state=S.TASK_STATE_RUNNING, worker_id="w", **base),  # type: ignore[arg-type]
        task_pb2.TaskEvent(state=S.TASK_STATE_SUCCEEDED, worker_id="w", **base),  # type: ignore[arg-type]
    ]


def test_recording_a_task_life_costs_a_few_commands_and_keeps_the_spec_once(tmp_path: Path) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings(enabled=False), timeline_seconds=60.0)
                await store.record(_life(uuid.uuid4().hex))  # scripts loaded, not counted
                tid = uuid.uuid4().hex
                before = await commands_served(redis)
                assert await store.record(_life(tid)) == [True, True, True]
                used = await commands_served(redis) - before
                # EVALSHA, GET, HMGET (a previous version's hash), RPUSH, SET, PEXPIRE; and the PUBLISH
                assert used <= 7, used
                k = keys.task_keys(tid)
                logged = [task_pb2.TaskEvent.FromString(raw) for raw in await redis.lrange(k.events, 0, -1)]
                assert [e.state for e in logged] == [S.TASK_STATE_QUEUED, S.TASK_STATE_RUNNING, S.TASK_STATE_SUCCEEDED]
                assert not any(e.HasField("spec") for e in logged)
                assert not any(e.name or e.queue for e in logged)  # kept once, in the spec
                (res,) = await store.get([tid])
                assert res.spec.name == "f.add" and res.state == S.TASK_STATE_SUCCEEDED and res.name == "f.add"
                reader = ResultsStore(redis, 600.0, IndexSettings(enabled=False))  # a process that wrote nothing
                final = (await reader.finals([tid]))[tid]
                assert (final.name, final.queue) == ("f.add", "q")
                before = await commands_served(redis)
                assert (await store.finals([tid]))[tid] == final  # the result it just wrote: no read
                assert await commands_served(redis) == before
                assert await redis.type(k.result) == b"string"
                assert len(await redis.get(k.result)) < 100  # state, count, time, spec, final event
                evs = await store.events_after(tid, "")
                assert evs[0].spec.name == "f.add" and [e.cursor for e in evs] == ["1", "2", "3"]
                assert [(e.name, e.queue) for e in evs] == [("f.add", "q")] * 3
                later = await store.events_after(tid, "1")  # without the first event: named all the same
                assert [(e.name, e.queue, e.HasField("spec")) for e in later] == [("f.add", "q", False)] * 2
                assert not evs[1].HasField("spec")
                # A late event is refused and writes nothing.
                before = await commands_served(redis)
                late = task_pb2.TaskEvent(task_id=tid, state=S.TASK_STATE_FAILED, at_ms=2)
                assert await store.record([late]) == [False]
                assert await commands_served(redis) - before <= 3  # EVALSHA, GET, PUBLISH
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_a_task_recorded_by_the_previous_layout_is_read_and_carried_on(tmp_path: Path) -> None:
    """A state hash written before the upgrade (keys.py: :st) is read by get, and the next record
    of that task carries its state, spec and event count into the new result."""

    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings(enabled=False))
                tid = uuid.uuid4().hex
                k = keys.task_keys(tid)
                queued, running, done = _life(tid)
                spec = queued.spec.SerializeToString()
                await redis.hset(
                    k.legacy, mapping={"s": S.TASK_STATE_RUNNING, "e": running.SerializeToString(), "p": spec}
                )
                await redis.hset(k.legacy, mapping={"t0": 5, "c": 2})
                await redis.rpush(k.events, queued.SerializeToString(), running.SerializeToString())
                (before,) = await store.get([tid])
                assert before.found and before.state == S.TASK_STATE_RUNNING and before.spec.name == "f.add"
                assert await store.record([done]) == [True]
                (after,) = await store.get([tid])
                assert after.state == S.TASK_STATE_SUCCEEDED and after.spec.name == "f.add" and after.created_ms == 5
                reader = ResultsStore(redis, 600.0, IndexSettings(enabled=False))  # read from Redis
                assert (await reader.finals([tid]))[tid].cursor == "3"
                assert (await store.finals([tid]))[tid].cursor == "3"  # as written, kept by the writer
                late = task_pb2.TaskEvent(task_id=tid, state=S.TASK_STATE_FAILED, at_ms=2)
                assert await store.record([late]) == [False]  # one result kept across the upgrade
            finally:
                await redis.aclose()

    asyncio.run(main())


def _task(queue: str, priority: int = 0) -> task_pb2.Task:
    return task_pb2.Task(id=uuid.uuid4().hex, spec=task_pb2.TaskSpec(name="f.add", queue=queue, priority=priority))


def test_a_task_handed_over_at_submission_skips_the_ready_set_only_when_it_is_next(tmp_path: Path) -> None:
    """enqueue_dispatch (worker/handover.py): into an empty queue, the new tasks are leased at once
    (fewer commands than enqueue then dispatch) and the ones beyond the credit wait, announced; a
    queue with older ready tasks hands those out first; a paused queue hands out nothing."""
    from tasktide_services.worker import keys as wkeys
    from tasktide_services.worker.store import RegistryStore, leased

    async def handover(store: RegistryStore, queue: str, tasks: list[task_pb2.Task], credit: int) -> list[str]:
        async with store.redis.pipeline(transaction=False) as pipe:
            store.build_enqueue_dispatch(pipe, queue, tasks, 1_000, 30_000, credit)
            _, reply = await pipe.execute()
        return [lease.task.id for lease in leased(reply, 31_000)]

    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = RegistryStore(redis)
                await store.enqueue([_task("warm")])  # scripts loaded, not counted
                tasks = [_task("q") for _ in range(3)]
                before = await commands_served(redis)
                assert await handover(store, "q", tasks, 2) == [t.id for t in tasks[:2]]
                # SADD, EVALSHA, EXISTS, ZCARD; per leased task HSETNX, INCR, HSET, ZADD, HINCRBY;
                # the third: HSETNX, INCR, ZADD (ready); then PUBLISH
                assert await commands_served(redis) - before <= 4 + 2 * 5 + 3 + 1
                k = wkeys.queue_keys("q")
                assert [m.decode() for m in await redis.zrange(k.ready, 0, -1)] == [tasks[2].id]
                newer = _task("q")
                assert await handover(store, "q", [newer], 1) == [tasks[2].id]  # the older one first
                await redis.set(k.paused, "1")
                assert await handover(store, "q", [_task("q")], 1) == []
                assert await redis.zcard(k.ready) == 2
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_a_redis_that_held_no_data_is_never_searched_for_the_previous_layout(tmp_path: Path) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings(enabled=False))
                await store.prepare()
                before = await commands_served(redis)
                (res,) = await store.get([uuid.uuid4().hex])
                assert not res.found
                assert await commands_served(redis) - before == 1  # the GET; no HMGET of a :st hash
                await store.record(_life(uuid.uuid4().hex))  # scripts loaded, not counted
                before = await commands_served(redis)
                await store.record(_life(uuid.uuid4().hex))
                assert await commands_served(redis) - before <= 6  # EVALSHA, GET, RPUSH, SET, PEXPIRE; PUBLISH
                again = ResultsStore(redis, 600.0, IndexSettings(enabled=False))
                await redis.set("other", "data")
                await again.prepare()  # the first start's answer holds
                assert not await again._legacy_possible()
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_index_counts_follow_a_task_through_its_states_and_its_bucket_expires(tmp_path: Path) -> None:
    """index_put leaves alone the count fields an entry keeps (its name) and sets the bucket's
    expiry once; the counts still say one task, in its latest state."""

    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings())
                tid = uuid.uuid4().hex
                now = int(time.time() * 1000)
                for e in _life(tid):
                    e.at_ms = now
                    await store.record([e])
                b = store.index.bucket(now)
                k = keys.index_keys("default", b)
                assert await redis.hgetall(k.counts) == {b"s%d" % S.TASK_STATE_SUCCEEDED: b"1", b"nf.add": b"1"}
                for key in k:
                    assert await redis.pttl(key) > 0
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_index_entry_written_without_a_read_falls_back_when_the_task_has_one(tmp_path: Path) -> None:
    """A batch that holds a task's submission writes its index entry with HSETNX (no read); a task
    that has an entry in the bucket after all (its submission recorded again, or recorded before
    its later events came in one batch with it) keeps one entry, counted once, in its latest state,
    and the bucket's expiry, set by the call that created the bucket, is not set again."""

    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings())
                tid, other = uuid.uuid4().hex, uuid.uuid4().hex
                now = int(time.time() * 1000)
                life, other_life = _life(tid), _life(other)
                for e in [*life, *other_life]:
                    e.at_ms = now
                await store.record(life[:1])  # the submission alone: the entry is created
                b = store.index.bucket(now)
                k = keys.index_keys("default", b)
                await redis.pexpire(k.order, 900_000)  # told apart from the expiry the script sets
                await store.record(life)  # again, with the rest: the entry exists, it is replaced
                await store.record(life)  # and once more: final, left alone
                await store.record(other_life)  # another task in the bucket
                assert await redis.hgetall(k.counts) == {b"s%d" % S.TASK_STATE_SUCCEEDED: b"2", b"nf.add": b"2"}
                entry = await redis.hget(k.entries, tid)
                assert entry is not None and entry.startswith(b"%d\x1f" % S.TASK_STATE_SUCCEEDED)
                assert await redis.zcard(k.order) == 2
                assert 0 < await redis.pttl(k.order) <= 900_000  # not set again
                for key in (k.entries, k.counts):
                    assert 0 < await redis.pttl(key)
            finally:
                await redis.aclose()

    asyncio.run(main())
