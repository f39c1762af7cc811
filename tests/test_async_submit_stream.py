"""The AsyncClient's SubmitStream (tasktide/_async_submitter.py): coroutines share one stream and
its messages, each submission answered by its own sequence number; a refusal leaves the stream open;
a caller that stops waiting is forgotten; the stream is replaced after a break or a long idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest

from tasktide import AsyncClient, ClientSettings
from tasktide._async_submitter import AsyncStreamSubmitter
from tasktide._exceptions import InvalidArgument, Unavailable
from tasktide._spec import build_spec
from tasktide.v1 import scheduler_pb2_grpc
from tasktide_services.testing import PlatformThread, run_worker_thread
from tests.tasks_app import app


class _MessagesSent(grpc.aio.StreamStreamClientInterceptor):
    """Counts the SubmitStream messages a client sends and the submissions they carry, and keeps
    the size of the largest message of several."""

    def __init__(self) -> None:
        self.messages = 0
        self.submissions = 0
        self.largest_batch = 0  # submissions
        self.largest_batch_bytes = 0

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        async def counted() -> AsyncIterator[Any]:
            async for req in request_iterator:
                self.messages += 1
                self.submissions += len(req.batch) or 1
                if len(req.batch) > 1:
                    self.largest_batch = max(self.largest_batch, len(req.batch))
                    self.largest_batch_bytes = max(self.largest_batch_bytes, req.ByteSize())
                yield req

        return await continuation(client_call_details, counted())


def test_coroutines_share_the_streams_messages_and_each_gets_its_own_id(platform, client, queue_name):
    """300 submissions gathered at once: far fewer messages than tasks, every id its own task's."""
    counter = _MessagesSent()

    async def run() -> list[str]:
        async with grpc.aio.insecure_channel(platform.address, interceptors=[counter]) as channel:
            submitter = AsyncStreamSubmitter(scheduler_pb2_grpc.SchedulerStub(channel), platform.address)
            specs = [build_spec("t.add", [i, 1], {}, queue=queue_name) for i in range(300)]
            ids = await asyncio.gather(*(submitter.submit(s) for s in specs))
            await submitter.close()
            return ids

    ids = asyncio.run(run())
    assert len(set(ids)) == 300 and all(len(i) == 32 for i in ids)
    assert counter.submissions == 300
    assert counter.messages < 150
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert [client.result(i, timeout=20) for i in ids] == [i + 1 for i in range(300)]


def test_a_batch_stays_under_the_message_size_a_scheduler_takes(server_settings, queue_name):
    """Twenty tasks of about 300 KB each gathered at once, to a scheduler that takes messages of
    2 MiB at most: the client sends them in messages under 1 MiB, and every task is accepted."""
    small = replace(server_settings, limits=replace(server_settings.limits, max_message_bytes=2 * 1024 * 1024))
    counter = _MessagesSent()

    async def run(address: str) -> list[str]:
        async with grpc.aio.insecure_channel(address, interceptors=[counter]) as channel:
            submitter = AsyncStreamSubmitter(scheduler_pb2_grpc.SchedulerStub(channel), address)
            await submitter.submit(build_spec("t.add", [0, 0], {}, queue=queue_name))  # batches announced
            specs = [build_spec("t.add", ["x" * 300_000, str(i)], {}, queue=queue_name) for i in range(20)]
            ids = await asyncio.gather(*(submitter.submit(s) for s in specs))
            await submitter.close()
            return ids

    with PlatformThread(small) as p:
        ids = asyncio.run(run(p.address))
    assert len(set(ids)) == 20 and all(len(i) == 32 for i in ids)
    assert counter.submissions == 21 and counter.messages < 21  # batched, yet each message small enough


def test_batches_stay_under_a_message_limit_below_1_mib(server_settings, queue_name):
    """Forty tasks of about 20 KiB each gathered at once, to a scheduler that takes messages of
    64 KiB at most (and announces it): the client's batches stay under that size, and every task is
    accepted (one message of them all, under the client's own 1 MiB bound, would end the stream
    with RESOURCE_EXHAUSTED and fail every submission it carried)."""
    limit = 64 * 1024
    small = replace(server_settings, limits=replace(server_settings.limits, max_message_bytes=limit))
    counter = _MessagesSent()

    async def run(address: str) -> list[str]:
        async with grpc.aio.insecure_channel(address, interceptors=[counter]) as channel:
            submitter = AsyncStreamSubmitter(scheduler_pb2_grpc.SchedulerStub(channel), address)
            await submitter.submit(build_spec("t.add", [0, 0], {}, queue=queue_name))  # batches announced
            specs = [build_spec("t.add", ["x" * 20_000, str(i)], {}, queue=queue_name) for i in range(40)]
            ids = await asyncio.gather(*(submitter.submit(s) for s in specs))
            await submitter.close()
            return ids

    with PlatformThread(small) as p:
        ids = asyncio.run(run(p.address))
    assert len(set(ids)) == 40 and all(len(i) == 32 for i in ids)
    assert counter.submissions == 41
    assert counter.largest_batch > 1, "no batch formed: the test shows nothing"
    assert counter.largest_batch_bytes <= limit


def test_a_refused_task_raises_and_the_stream_goes_on(platform, client, queue_name):
    async def run() -> tuple[str, str]:
        async with AsyncClient(settings=ClientSettings.from_env({}, address=platform.address)) as c:
            first = await c.submit("t.add", [1, 1], queue=queue_name)
            stream = c._submitter._stream  # noqa: SLF001 - which stream carried it
            with pytest.raises(InvalidArgument, match="name"):
                await c.submit("not a valid name!", [], queue=queue_name)
            second = await c.submit("t.add", [2, 2], queue=queue_name)
            assert c._submitter._stream is stream  # noqa: SLF001 - the same stream
            return first.id, second.id

    ids = asyncio.run(run())
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert [client.result(i, timeout=20) for i in ids] == [2, 4]


def test_a_caller_that_stops_waiting_is_forgotten_and_the_others_are_answered(platform, client, queue_name):
    """A submission cancelled while it waits for its answer leaves nothing behind on the stream
    (its task may still have been accepted); the submissions beside and after it get theirs."""

    async def run() -> list[str]:
        async with AsyncClient(settings=ClientSettings.from_env({}, address=platform.address)) as c:
            await c.submit("t.add", [0, 0], queue=queue_name)  # the stream is open
            dropped = asyncio.ensure_future(c.submit("t.add", [9, 9], queue=queue_name))
            kept = asyncio.ensure_future(c.submit("t.add", [1, 1], queue=queue_name))
            await asyncio.sleep(0)  # both are queued on the stream
            dropped.cancel()
            with pytest.raises(asyncio.CancelledError):
                await dropped
            ids = [(await kept).id, (await c.submit("t.add", [2, 2], queue=queue_name)).id]
            assert not c._submitter._stream.pending  # noqa: SLF001 - nothing left waiting
            return ids

    ids = asyncio.run(run())
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert [client.result(i, timeout=20) for i in ids] == [2, 4]


def test_the_stream_reopens_after_the_platform_restarts(server_settings, queue_name):
    """The submissions in flight when the platform goes fail with Unavailable; once it is back, the
    next submission opens a new stream."""
    p1 = PlatformThread(server_settings).start()  # on port 0; it comes back on the port it was given
    settings = replace(server_settings, address=p1.address)

    async def run() -> tuple[str, str]:
        async with AsyncClient(settings=ClientSettings.from_env({}, address=p1.address)) as c:
            first = await c.submit("t.add", [1, 2], queue=queue_name)
            await asyncio.to_thread(p1.stop)
            with pytest.raises(Unavailable):
                await c.submit("t.add", [3, 4], queue=queue_name)
            p2 = await asyncio.to_thread(lambda: PlatformThread(settings).start())
            try:
                for _ in range(100):  # the channel reconnects with backoff
                    try:
                        second = await c.submit("t.add", [5, 6], queue=queue_name)
                        break
                    except Unavailable:
                        await asyncio.sleep(0.2)
                else:
                    raise AssertionError("no submission went through after the restart")
                await asyncio.to_thread(_run_both, p2.address, queue_name, first.id, second.id)
            finally:
                await asyncio.to_thread(p2.stop)
            return first.id, second.id

    asyncio.run(run())


def _run_both(address: str, queue: str, first: str, second: str) -> None:
    from tasktide import Client

    with run_worker_thread(app, address, queues=(queue,)), Client(address=address) as c:
        assert (c.result(first, timeout=20), c.result(second, timeout=20)) == (3, 11)


def test_a_stream_left_idle_is_replaced_before_the_next_submission(platform, client, queue_name, monkeypatch):
    from tasktide import _async_submitter

    monkeypatch.setattr(_async_submitter, "MAX_IDLE_SECONDS", 0.2)

    async def run() -> list[str]:
        async with AsyncClient(settings=ClientSettings.from_env({}, address=platform.address)) as c:
            first = await c.submit("t.add", [1, 1], queue=queue_name)
            stream = c._submitter._stream  # noqa: SLF001 - which stream carried it
            await asyncio.sleep(0.4)
            second = await c.submit("t.add", [2, 2], queue=queue_name)
            assert c._submitter._stream is not stream  # noqa: SLF001
            return [first.id, second.id]

    ids = asyncio.run(run())
    assert len(set(ids)) == 2
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert [client.result(i, timeout=20) for i in ids] == [2, 4]
