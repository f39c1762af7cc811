"""A plain timeline (queued, ran once, ended, recorded in one call) is kept in the result instead of
an event log (results/folded.py), and reads exactly as the log would have. On a Redis of its own."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from tasktide.v1 import task_pb2
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results import keys
from tasktide_services.results.store import ResultsStore
from tests.processes import commands_served, own_redis

S = task_pb2


def _life(task_id: str, final: int = S.TASK_STATE_SUCCEEDED, message: str = "") -> list[task_pb2.TaskEvent]:
    """What a task run at once records: QUEUED with the spec, RUNNING, the final event."""
    spec = task_pb2.TaskSpec(name="f.add", queue="q")
    base: dict[str, Any] = {"task_id": task_id, "name": "f.add", "queue": "q"}
    return [
        task_pb2.TaskEvent(state=S.TASK_STATE_QUEUED, spec=spec, at_ms=1_000, **base),
        task_pb2.TaskEvent(state=S.TASK_STATE_RUNNING, worker_id="w", at_ms=1_004, message=message, **base),
        task_pb2.TaskEvent(state=final, worker_id="w", at_ms=1_010, run_ms=5, **base),  # type: ignore[arg-type]
    ]


def _bare(evs: list[task_pb2.TaskEvent]) -> list[bytes]:
    out = []
    for e in evs:
        e.ClearField("task_id")
        out.append(e.SerializeToString())
    return out


def test_a_plain_timeline_is_kept_in_the_result_and_reads_as_a_logged_one(tmp_path: Path) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings(enabled=False), timeline_seconds=60.0)
                await store.prepare()  # a new Redis: no state hash of an earlier layout to look for
                await store.record(_life(uuid.uuid4().hex))  # scripts loaded, not counted
                plain, logged = uuid.uuid4().hex, uuid.uuid4().hex
                before = await commands_served(redis)
                assert await store.record(_life(plain)) == [True, True, True]
                assert await commands_served(redis) - before <= 4  # EVALSHA, GET, SET; and the PUBLISH
                assert not await redis.exists(keys.task_keys(plain).events)
                assert 0 < await redis.pttl(keys.task_keys(plain).result) <= 600_000

                # The same events, the first recorded alone: logged, as any timeline written in parts.
                first, *rest = _life(logged)
                assert await store.record([first]) == [True]
                assert await store.record(rest) == [True, True]
                assert await redis.llen(keys.task_keys(logged).events) == 3

                folded, kept = await store.events_after(plain, ""), await store.events_after(logged, "")
                assert [e.cursor for e in folded] == ["1", "2", "3"]
                assert folded[0].spec.name == "f.add" and folded[1].worker_id == "w"
                assert _bare(folded) == _bare(kept)
                later, kept_later = await store.events_after(plain, "1", 1), await store.events_after(logged, "1", 1)
                assert [e.cursor for e in later] == ["2"] and _bare(later) == _bare(kept_later)
                assert await store.events_after(plain, "3") == []
                (res,) = await store.get([plain])
                assert res.state == S.TASK_STATE_SUCCEEDED and res.spec.name == "f.add" and res.created_ms == 1_000
                reader = ResultsStore(redis, 600.0, IndexSettings(enabled=False))  # a process that wrote nothing
                assert (await reader.finals([plain]))[plain].cursor == "3"
            finally:
                await redis.aclose()

    asyncio.run(main())


def test_a_timeline_that_says_more_than_its_result_is_logged(tmp_path: Path) -> None:
    """A redelivery's message, a DEAD task (it may be requeued) and a progress event are kept in the
    log, for the timeline expiry."""

    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            redis = await connect(url)
            try:
                store = ResultsStore(redis, 600.0, IndexSettings(enabled=False), timeline_seconds=60.0)
                await store.prepare()
                redelivered, dead, progress = (uuid.uuid4().hex for _ in range(3))
                await store.record(_life(redelivered, message="delivery 2: the lease of delivery 1 expired"))
                await store.record(_life(dead, final=S.TASK_STATE_DEAD))
                life = _life(progress)
                life[1].progress, life[1].progress_only = 0.5, True
                await store.record(life)
                for tid in (redelivered, dead, progress):
                    assert await redis.llen(keys.task_keys(tid).events) == 3, tid
                    assert 0 < await redis.pttl(keys.task_keys(tid).events) <= 60_000
                (ev,) = (await store.events_after(redelivered, "1"))[:1]
                assert ev.message.startswith("delivery 2")
            finally:
                await redis.aclose()

    asyncio.run(main())
