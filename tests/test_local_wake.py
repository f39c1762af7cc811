"""A result recorded in the results service's own process wakes the Waits held there at once
(ResultsStore.on_final -> Notifier.wake_waiters), without waiting for the pub/sub message, which
every replica still gets. Here the notifier is never subscribed: only the direct wake can fire."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from tasktide.v1 import task_pb2
from tasktide_services.common.notify import Notifier
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results import keys
from tasktide_services.results.store import ResultsStore
from tests.processes import own_redis


@contextlib.asynccontextmanager
async def wired(folder: Path) -> AsyncIterator[tuple[ResultsStore, Notifier]]:
    """A results store on a Redis of its own whose final events wake `Notifier.wake_waiters`, as
    the server wires them; the notifier is not started, so no pub/sub message reaches it."""
    with own_redis(folder / "redis") as url:
        redis = await connect(url)
        try:
            store = ResultsStore(redis, 600.0, IndexSettings(enabled=False))
            notifier = Notifier(redis, keys.EVENTS)
            store.on_final = notifier.wake_waiters
            yield store, notifier
        finally:
            await redis.aclose()


def test_a_final_event_recorded_here_wakes_the_waiters_here_not_the_subscriptions(tmp_path: Path) -> None:
    async def main() -> None:
        async with wired(tmp_path) as (store, notifier):
            tid, other = uuid.uuid4().hex, uuid.uuid4().hex
            waiting, untouched = notifier.hold(tid), notifier.hold(other)
            watch = notifier.subscribe({tid})

            def ev(state: int, **kw: object) -> task_pb2.TaskEvent:
                return task_pb2.TaskEvent(task_id=tid, state=state, at_ms=1, name="w.job", queue="q", **kw)  # type: ignore[arg-type]

            await store.record([ev(task_pb2.TASK_STATE_QUEUED)])
            await store.record([ev(task_pb2.TASK_STATE_RUNNING, progress=0.5, progress_only=True)])
            assert not waiting.is_set()  # nothing final yet
            await store.record([ev(task_pb2.TASK_STATE_SUCCEEDED)])
            assert waiting.is_set()
            assert not untouched.is_set()
            assert await watch.next_batch(0.05) is None  # a Watch reads on the channel's message
            notifier.release(tid, waiting)
            notifier.release(other, untouched)
            assert notifier.waiting() == 1  # the subscription only

    asyncio.run(main())


def test_a_final_event_recorded_here_names_it_to_a_follow_subscription(tmp_path: Path) -> None:
    """A Follow stream's subscription (made with `finals`) hears of a result recorded here at once;
    it stops following the id once answered, so the channel's later message costs it no read."""

    async def main() -> None:
        async with wired(tmp_path) as (store, notifier):
            tid, other = uuid.uuid4().hex, uuid.uuid4().hex
            follow = notifier.subscribe(set(), finals=True)
            notifier.grow(follow, {tid, other})
            await store.record([task_pb2.TaskEvent(task_id=tid, state=task_pb2.TASK_STATE_SUCCEEDED, at_ms=1)])
            assert await follow.next_batch(5.0) == {tid}
            notifier.shrink(follow, {tid})
            notifier.wake(tid)  # the channel's message, later: no longer followed
            assert len(follow) == 0
            notifier.unsubscribe(follow)
            assert notifier.waiting() == 0

    asyncio.run(main())


def test_a_final_only_watch_reads_nothing_for_what_is_only_started_here_and_takes_the_result_as_written(
    tmp_path: Path,
) -> None:
    """A Watch of final events only, served where the tasks are recorded: the channel's message of a
    batch that only starts a task wakes it for nothing to read, so it is not woken by it; the final
    result written here wakes it and is answered as written (ResultsStore.finals), with no read."""
    from tasktide.v1 import results_pb2
    from tasktide_services.common.settings import ServerSettings
    from tasktide_services.results.service import ResultsService

    async def gets(store: ResultsStore) -> int:
        stats = await store.redis.info("commandstats")
        return int(stats.get("cmdstat_get", {}).get("calls", 0))

    async def main() -> None:
        async with wired(tmp_path) as (store, notifier):
            notifier.origin = store.origin  # as the server wires it: this process's messages are known
            await notifier.start()
            try:
                service = ResultsService(store, notifier, ServerSettings())
                tid = uuid.uuid4().hex

                def ev(state: int) -> task_pb2.TaskEvent:
                    return task_pb2.TaskEvent(task_id=tid, state=state, at_ms=1, name="w.job", queue="q")  # type: ignore[arg-type]

                req = results_pb2.WatchRequest(task_ids=[tid], final_only=True, until_final=True)
                watch = service.Watch(req, None)  # type: ignore[arg-type]  # no call context: none is read
                first = asyncio.ensure_future(anext(watch))
                canary = notifier.subscribe({tid})  # a watch of every event: woken by the channel
                await asyncio.sleep(0.2)  # the watch's first read: nothing recorded yet
                before = await gets(store)
                await store.record([ev(task_pb2.TASK_STATE_QUEUED), ev(task_pb2.TASK_STATE_RUNNING)])
                assert await canary.next_batch(5.0) == {tid}, "the channel's message did not come"
                await asyncio.sleep(0.2)  # time for a woken watch to read
                assert await gets(store) - before == 1, (
                    "the final-only watch read a task only started"
                )  # record's own GET
                assert not first.done()
                await store.record([ev(task_pb2.TASK_STATE_SUCCEEDED)])
                got = await asyncio.wait_for(first, 5.0)
                assert got.state == task_pb2.TASK_STATE_SUCCEEDED and got.name == "w.job" and got.cursor == "3"
                assert await gets(store) - before == 2, "the result written here was read back"  # the records' GETs
                notifier.unsubscribe(canary)
                with contextlib.suppress(StopAsyncIteration):
                    await anext(watch)
            finally:
                await notifier.stop()

    asyncio.run(main())


def test_a_result_kept_here_is_forgotten_once_another_process_reopens_its_task(tmp_path: Path) -> None:
    """Two results processes on one Redis, wired as the server wires them. The first records a task
    DEAD and keeps the result as written; the second requeues it (a reopen event). Once the second's
    notice has come, the first no longer answers the old result: it reads the task, which is not
    final any more. (Before, it answered DEAD for up to 2 s, RecentFinals' time.)"""

    async def main() -> None:
        async with wired(tmp_path) as (here, notifier):
            notifier.origin = here.origin
            notifier.on_others = here.changed_elsewhere
            await notifier.start()
            elsewhere = ResultsStore(here.redis, 600.0, IndexSettings(enabled=False))
            try:
                tid = uuid.uuid4().hex

                def ev(state: int, **kw: object) -> task_pb2.TaskEvent:
                    return task_pb2.TaskEvent(task_id=tid, state=state, at_ms=1, name="w.job", queue="q", **kw)  # type: ignore[arg-type]

                await here.record([ev(task_pb2.TASK_STATE_DEAD)])
                assert (await here.finals([tid]))[tid].state == task_pb2.TASK_STATE_DEAD
                canary = notifier.subscribe({tid})
                assert await elsewhere.record([ev(task_pb2.TASK_STATE_QUEUED, reopen=True)]) == [True]
                assert await canary.next_batch(5.0) == {tid}, "the other process's notice did not come"
                assert await here.finals([tid]) == {}, "the result kept here was handed out after the reopen"
                notifier.unsubscribe(canary)
            finally:
                await notifier.stop()

    asyncio.run(main())
