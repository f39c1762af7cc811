"""The task index keeps when a task's latest attempt became runnable and when it started, so ListTasks
answers with ready_ms and started_ms (wait and run time): from one batch holding the whole story,
from batches apart (carried by the bucket's entry), reset by a new attempt, and left unknown (0),
never wrong, where the index cannot know them. The results store on a Redis of its own."""

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
HOUR = 3_600_000
T0 = (int(time.time() * 1000) // HOUR - 1) * HOUR  # the last hour's start: T0 + n shares its bucket (n < HOUR)


# Each test runs twice: the index entry written by its own script call, and (one Redis server, a
# batch of one task) inside the task's `record` call (store.py).
ONE_NODE = [False]


@pytest.fixture(autouse=True, params=[False, True], ids=["index-apart", "index-in-record"])
def _layout(request: pytest.FixtureRequest) -> None:
    ONE_NODE[0] = request.param


def _run(tmp_path: Path, body: Callable[[ResultsStore, Any], Awaitable[None]], bucket: float = 3600.0) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(
                    redis, 600.0, IndexSettings(retention=86_400.0, bucket=bucket), one_node=ONE_NODE[0]
                )
                await body(store, redis)
            finally:
                await redis.aclose()

    asyncio.run(main())


def _ev(tid: str, state: int, at: int, **kw: Any) -> task_pb2.TaskEvent:
    return task_pb2.TaskEvent(task_id=tid, state=state, at_ms=at, name="tm.job", queue="q", **kw)  # type: ignore[arg-type]


async def _one(store: ResultsStore, tid: str, since: int = T0) -> task_pb2.TaskResult:
    page = await store.index.page(store.redis, "default", Filters(), since, 0, 1000, "", store.get)
    (r,) = [r for r in page.tasks if r.task_id == tid]
    return r


def _id() -> str:
    return uuid.uuid4().hex


def test_one_batch_with_the_whole_story(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        tid = _id()
        spec = task_pb2.TaskSpec(name="tm.job", queue="q")
        await store.record(
            [
                _ev(tid, S.TASK_STATE_QUEUED, T0 + 1_000, spec=spec),
                _ev(tid, S.TASK_STATE_RUNNING, T0 + 1_250, worker_id="w"),
                _ev(tid, S.TASK_STATE_SUCCEEDED, T0 + 2_000, worker_id="w"),
            ]
        )
        r = await _one(store, tid)
        assert (r.ready_ms, r.started_ms, r.updated_ms) == (T0 + 1_000, T0 + 1_250, T0 + 2_000)

    _run(tmp_path, body)


def test_batches_apart_carry_the_times_in_the_bucket(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        tid = _id()
        await store.record([_ev(tid, S.TASK_STATE_SCHEDULED, T0 + 10)])
        await store.record([_ev(tid, S.TASK_STATE_QUEUED, T0 + 5_000)])
        r = await _one(store, tid)
        assert (r.ready_ms, r.started_ms) == (T0 + 5_000, 0)
        await store.record([_ev(tid, S.TASK_STATE_RUNNING, T0 + 5_400, worker_id="w")])
        await store.record([_ev(tid, S.TASK_STATE_RUNNING, T0 + 5_900, progress=0.5, progress_only=True)])
        r = await _one(store, tid)
        assert (r.ready_ms, r.started_ms) == (T0 + 5_000, T0 + 5_400)
        await store.record([_ev(tid, S.TASK_STATE_FAILED, T0 + 9_000, worker_id="w")])
        r = await _one(store, tid)
        assert r.state == S.TASK_STATE_FAILED
        assert (r.ready_ms, r.started_ms, r.updated_ms) == (T0 + 5_000, T0 + 5_400, T0 + 9_000)

    _run(tmp_path, body)


def test_a_new_attempt_starts_afresh(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        tid = _id()
        await store.record([_ev(tid, S.TASK_STATE_QUEUED, T0 + 100), _ev(tid, S.TASK_STATE_RUNNING, T0 + 200)])
        await store.record([_ev(tid, S.TASK_STATE_RETRYING, T0 + 300, attempt=0)])
        await store.record([_ev(tid, S.TASK_STATE_QUEUED, T0 + 1_300, attempt=1)])  # the retry's time came
        r = await _one(store, tid)
        assert (r.ready_ms, r.started_ms) == (T0 + 1_300, 0)  # not the first attempt's start
        await store.record([_ev(tid, S.TASK_STATE_RUNNING, T0 + 1_310, attempt=1)])
        await store.record([_ev(tid, S.TASK_STATE_SUCCEEDED, T0 + 1_500, attempt=1)])
        r = await _one(store, tid)
        assert (r.ready_ms, r.started_ms) == (T0 + 1_300, T0 + 1_310)

    _run(tmp_path, body)


def test_times_a_bucket_does_not_hold_are_unknown_not_wrong(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        tid, other = _id(), _id()
        t1 = (int(time.time()) - 10) * 1000  # buckets of a second
        # started in one bucket, ended in the next (batches apart): the end's bucket knows nothing
        await store.record([_ev(tid, S.TASK_STATE_QUEUED, t1 + 100), _ev(tid, S.TASK_STATE_RUNNING, t1 + 200)])
        await store.record([_ev(tid, S.TASK_STATE_SUCCEEDED, t1 + 1_500)])
        r = await _one(store, tid, since=t1)
        assert (r.ready_ms, r.started_ms, r.updated_ms) == (0, 0, t1 + 1_500)
        # cancelled while queued: ready known, never started
        await store.record([_ev(other, S.TASK_STATE_QUEUED, t1 + 2_100)])
        await store.record([_ev(other, S.TASK_STATE_CANCELLED, t1 + 2_200)])
        r = await _one(store, other, since=t1)
        assert (r.ready_ms, r.started_ms) == (t1 + 2_100, 0)

    _run(tmp_path, body, bucket=1.0)


def test_a_late_event_after_the_end_changes_nothing(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        tid = _id()
        await store.record(
            [
                _ev(tid, S.TASK_STATE_QUEUED, T0 + 100),
                _ev(tid, S.TASK_STATE_RUNNING, T0 + 200),
                _ev(tid, S.TASK_STATE_SUCCEEDED, T0 + 300),
                _ev(tid, S.TASK_STATE_RUNNING, T0 + 400),  # refused by record: the task is final
            ]
        )
        await store.record([_ev(tid, S.TASK_STATE_QUEUED, T0 + 500)])
        r = await _one(store, tid)
        assert (r.state, r.ready_ms, r.started_ms) == (S.TASK_STATE_SUCCEEDED, T0 + 100, T0 + 200)

    _run(tmp_path, body)


def test_the_start_the_worker_reported_replaces_the_hand_over(tmp_path: Path) -> None:
    async def body(store: ResultsStore, redis: Any) -> None:
        tid, other = _id(), _id()
        # handed over at +200, waited in the worker's buffer, ran from +900 (the end event says so)
        await store.record([_ev(tid, S.TASK_STATE_QUEUED, T0 + 100), _ev(tid, S.TASK_STATE_RUNNING, T0 + 200)])
        await store.record([_ev(tid, S.TASK_STATE_SUCCEEDED, T0 + 1_000, run_ms=100)])
        r = await _one(store, tid)
        assert (r.ready_ms, r.started_ms) == (T0 + 100, T0 + 900)
        # in one batch too, and with a start in another bucket than the end's
        await store.record(
            [
                _ev(other, S.TASK_STATE_QUEUED, T0 + HOUR - 50),
                _ev(other, S.TASK_STATE_RUNNING, T0 + HOUR - 40),
                _ev(other, S.TASK_STATE_FAILED, T0 + HOUR + 10, run_ms=40),
            ]
        )
        r = await _one(store, other)
        assert (r.ready_ms, r.started_ms, r.updated_ms) == (T0 + HOUR - 50, T0 + HOUR - 30, T0 + HOUR + 10)
        # a run of no measurable time is a run time of 0, not the time since the hand-over
        quick = _id()
        await store.record([_ev(quick, S.TASK_STATE_QUEUED, T0 + 10), _ev(quick, S.TASK_STATE_RUNNING, T0 + 20)])
        await store.record([_ev(quick, S.TASK_STATE_SUCCEEDED, T0 + 70, run_ms=0)])
        assert (await _one(store, quick)).started_ms == T0 + 70

    _run(tmp_path, body)
