"""What the results service holds in memory for waiters is released, and idle watchers cost Redis
nothing: the service on a gRPC server of the test's own loop (so its notifier can be counted), on a
Redis of its own (so its commands can be counted)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2
from tasktide_services.common.notify import Notifier
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.rpc import add_service
from tasktide_services.common.settings import ServerSettings
from tasktide_services.results import keys
from tasktide_services.results.service import ResultsService
from tasktide_services.results.store import ResultsStore
from tests.processes import own_redis

WAITS = 2_000
WATCHED = 2_000


@contextlib.asynccontextmanager
async def _results_service(url: str) -> AsyncIterator[tuple[ResultsService, results_pb2_grpc.ResultsStub, Any]]:
    redis = await connect(url)
    notifier = Notifier(redis, keys.EVENTS)
    await notifier.start()
    service = ResultsService(ResultsStore(redis, 60.0), notifier, ServerSettings())
    server = grpc.aio.server()
    add_service(server, results_pb2.DESCRIPTOR.services_by_name["Results"], service)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield service, results_pb2_grpc.ResultsStub(channel), redis
    finally:
        await channel.close()
        await server.stop(0.5)
        await notifier.stop()
        await redis.aclose()


def _run(tmp_path: Path, body: Callable[[ResultsService, results_pb2_grpc.ResultsStub, Any], Awaitable[None]]) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            async with _results_service(url) as (service, stub, redis):
                await body(service, stub, redis)

    asyncio.run(main())


def test_wait_on_unknown_ids_leaves_no_waiter_behind(tmp_path: Path) -> None:
    async def body(service: ResultsService, stub: results_pb2_grpc.ResultsStub, redis: Any) -> None:
        ids = [uuid.uuid4().hex for _ in range(WAITS)]
        for i in range(0, WAITS, 200):
            answers = await asyncio.gather(
                *(stub.Wait(results_pb2.WaitRequest(task_id=t, timeout=0.05)) for t in ids[i : i + 200])
            )
            assert not any(a.found for a in answers)
        assert service.notifier.waiting() == 0

    _run(tmp_path, body)


async def _script_calls(redis: Any) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_idle_watch_on_many_ids_reads_nothing_until_notified(tmp_path: Path) -> None:
    async def body(service: ResultsService, stub: results_pb2_grpc.ResultsStub, redis: Any) -> None:
        ids = [uuid.uuid4().hex for _ in range(WATCHED)]
        call = stub.Watch(results_pb2.WatchRequest(task_ids=ids))
        # The first read of every id is done once the service has subscribed them all.
        while service.notifier.waiting() < WATCHED:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        before = await _script_calls(redis)
        await asyncio.sleep(3.0)
        idle_reads = await _script_calls(redis) - before
        # A notification still wakes the watcher, for the id it names.
        event = task_pb2.TaskEvent(task_id=ids[7], state=task_pb2.TASK_STATE_SUCCEEDED, name="t.add")
        await service.store.record([event])
        got = await asyncio.wait_for(call.read(), 10)
        call.cancel()
        assert got.task_id == ids[7]
        assert idle_reads == 0

    _run(tmp_path, body)


NAMED = 10_000


def test_a_watch_held_up_by_its_client_keeps_each_wake_up_once(tmp_path: Path) -> None:
    """A Watch whose client does not read is held up writing (flow control) while its task is
    named again and again on the events channel: its subscription keeps the task once, not once
    per message, and the Watch goes on when the client reads."""

    async def body(service: ResultsService, stub: results_pb2_grpc.ResultsStub, redis: Any) -> None:
        tid = uuid.uuid4().hex
        chatter = [
            task_pb2.TaskEvent(
                task_id=tid, state=task_pb2.TASK_STATE_RUNNING, at_ms=1, name="w.job", queue="q",
                progress=i / 400, message="x" * 8_000, progress_only=True,
            )
            for i in range(400)
        ]  # fmt: skip
        for i in range(0, len(chatter), 100):
            await service.store.record(chatter[i : i + 100])
        end = service.notifier.subscribe({"end-of-test"})
        call = stub.Watch(results_pb2.WatchRequest(task_ids=[tid], until_final=False))
        try:
            while service.notifier.waiting() < 2:  # the Watch has subscribed; its client reads nothing
                await asyncio.sleep(0.01)
            for _batch in range(NAMED // 1_000):
                async with redis.pipeline(transaction=False) as pipe:
                    for _ in range(1_000):
                        pipe.publish(keys.EVENTS, tid)
                    await pipe.execute()
            await redis.publish(keys.EVENTS, "end-of-test")  # after the others on the channel
            assert await end.next_batch(30) == {"end-of-test"}
            held = service.notifier.unread()
            assert held <= 1, f"{held} wake-ups held for one task named {NAMED} times"
            got = [await call.read() for _ in range(len(chatter))]
            assert [e.progress for e in got] == [e.progress for e in chatter]
        finally:
            service.notifier.unsubscribe(end)
            call.cancel()

    _run(tmp_path, body)
