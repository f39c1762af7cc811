"""A worker session holds a bounded amount in the registry's memory: credit is capped (beyond it the
session ends with RESOURCE_EXHAUSTED), and a worker that sends without reading is slowed down by
flow control instead of filling the session's outgoing queue. The registry runs on a gRPC server of
the test's own loop (so its sessions can be looked at), on a Redis of its own."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc

from tasktide.v1 import worker_pb2, worker_pb2_grpc
from tasktide_services.common.notify import Notifier
from tasktide_services.common.peers import Peers
from tasktide_services.common.redis_conn import connect
from tasktide_services.common.rpc import add_service
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker import keys
from tasktide_services.worker.service import RegistryService
from tasktide_services.worker.session_state import OUT_MAX
from tasktide_services.worker.store import RegistryStore
from tests.processes import own_redis

HEARTBEATS = 100
LEASES_PER_HEARTBEAT = 2_000


@contextlib.asynccontextmanager
async def _registry(url: str) -> AsyncIterator[tuple[RegistryService, worker_pb2_grpc.RegistryStub]]:
    redis = await connect(url)
    notifier = Notifier(redis, keys.NOTIFY)
    await notifier.start()
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    settings = replace(ServerSettings(), address=f"127.0.0.1:{port}", redis_url=url)
    peers = Peers(settings)
    service = RegistryService(RegistryStore(redis), notifier, peers, settings)
    add_service(server, worker_pb2.DESCRIPTOR.services_by_name["Registry"], service)
    await server.start()
    channel = grpc.aio.insecure_channel(settings.address)
    try:
        yield service, worker_pb2_grpc.RegistryStub(channel)
    finally:
        await channel.close()
        await server.stop(0.5)
        await peers.close()
        await notifier.stop()
        await redis.aclose()


def _hello() -> worker_pb2.WorkerMessage:
    return worker_pb2.WorkerMessage(hello=worker_pb2.Hello(worker_id=f"w-{uuid.uuid4().hex[:6]}", queues=["q"]))


def test_credit_beyond_the_cap_ends_the_session_with_resource_exhausted(tmp_path: Path) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            async with _registry(url) as (service, stub):
                call = stub.Session()
                await call.write(_hello())
                welcome = await call.read()
                assert welcome.WhichOneof("kind") == "welcome"
                cap = service.settings.max_session_credit
                await call.write(worker_pb2.WorkerMessage(credit=cap))
                await call.write(worker_pb2.WorkerMessage(credit=1))
                try:
                    while True:
                        msg = await asyncio.wait_for(call.read(), 10)
                        assert msg is not grpc.aio.EOF, "the session ended without an error"
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert "credit" in (exc.details() or "")
                assert not service.sessions

    asyncio.run(main())


def test_a_worker_that_does_not_read_is_held_back_by_flow_control(tmp_path: Path) -> None:
    async def main() -> None:
        with own_redis(tmp_path / "redis") as url:
            async with _registry(url) as (service, stub):
                call = stub.Session()
                await call.write(_hello())
                await call.read()  # welcome; nothing is read after it
                # Each heartbeat of a lease the registry does not know is answered by a rejection.
                bogus = [
                    worker_pb2.LeaseRef(task_id=uuid.uuid4().hex, queue="q", lease_token=1)
                    for _ in range(LEASES_PER_HEARTBEAT)
                ]
                beat = worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(leases=bogus))
                largest = 0

                async def write_all() -> None:
                    for _ in range(HEARTBEATS):
                        await call.write(beat)

                writer = asyncio.ensure_future(write_all())
                quiet = 0.0
                while not writer.done() and quiet < 2.0:
                    before = largest
                    await asyncio.sleep(0.1)
                    sizes = [s.out.qsize() for s in service.sessions.values()]
                    largest = max([largest, *sizes])
                    quiet = quiet + 0.1 if largest == before else 0.0
                writer.cancel()
                call.cancel()
                print(f"\nlargest outgoing queue of the session: {largest} messages")
                assert largest <= OUT_MAX + LEASES_PER_HEARTBEAT

    asyncio.run(main())
