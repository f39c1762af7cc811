"""The Python clients' waits over Results.Follow (clients/python/tasktide/_following.py for Client,
_async_following.py for AsyncClient), each test run with both: one stream shared by every waiting
thread or coroutine, a wait that times out taken off it, waits that outlive a slow restart of the
results service, an unreachable platform reported as such, and Wait calls for a server without
Follow."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import tasktide
from tasktide.v1 import results_pb2_grpc, task_pb2
from tasktide_services.testing import client_settings, eventually, run_worker_thread, unreachable_address
from tests.processes import lone_results
from tests.tasks_app import app
from tests.test_follow import record


class Waiting:
    """A client of one flavour, used from the test's thread: `results` waits for many tasks at once
    (threads for Client, coroutines for AsyncClient), each a result or the exception it raised."""

    def __init__(self, flavour: str, settings: tasktide.ClientSettings) -> None:
        self.flavour = flavour
        self.settings = settings

    def results(self, ids: list[str], timeout: float, between: Callable[[], None] = lambda: None) -> list[Any]:
        """Waits for every id, calling `between` (in the test's thread) once the waits are on their way."""
        if self.flavour == "blocking":
            with tasktide.Client(settings=self.settings) as client:
                self.follower = client._follower
                with futures.ThreadPoolExecutor(len(ids)) as pool:
                    fs = [pool.submit(client.result, tid, timeout) for tid in ids]
                    between()
                    return [f.exception() or f.result() for f in fs]

        async def main() -> list[Any]:
            async with tasktide.AsyncClient(settings=self.settings) as client:
                self.follower = client._follower
                waits = asyncio.gather(*(client.result(tid, timeout) for tid in ids), return_exceptions=True)
                await asyncio.sleep(0.05)
                await asyncio.to_thread(between)
                return list(await waits)

        return asyncio.run(main())


@pytest.fixture(params=["blocking", "asyncio"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_many_waits_share_one_stream(platform, client, queue_name, flavour):
    handles = [client.submit("t.add", [i, i], queue=queue_name) for i in range(60)]
    w = Waiting(flavour, client_settings(platform.address))
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        got = w.results([h.id for h in handles], 60)
        assert got == [2 * i for i in range(60)]
        assert w.follower.opened == 1
        assert not w.follower._waiters
        assert w.results([handles[5].id], 10) == [10]  # answered again when waited for again


def test_a_wait_that_times_out_is_taken_off_the_stream(platform, client, queue_name, flavour):
    h = client.submit("t.add", [4, 4], queue=queue_name)  # no worker yet
    w = Waiting(flavour, client_settings(platform.address))
    (got,) = w.results([h.id], 0.3)
    assert isinstance(got, tasktide.TaskTimeout)
    assert not w.follower._waiters
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=60) == 8


# How long the lone results service stays down: longer than a platform never reached is tried for
# (MAX_FAILURES streams refused, about 3 s).
OUTAGE_SECONDS = 4.0


def test_waits_outlive_a_slow_restart_of_the_results_service(tmp_path: Path, flavour) -> None:
    ids = [uuid.uuid4().hex for _ in range(4)]
    with lone_results(tmp_path) as r:
        address = r.addresses["results"][0]
        w = Waiting(flavour, tasktide.ClientSettings.from_env({}, address=address))

        def restart() -> None:
            # The service has accepted the stream; no result of it has come, none is final yet.
            eventually(lambda: w.follower.reached and len(w.follower._waiters) == 4, what="the stream accepted")
            r.kill("results", 0)
            time.sleep(OUTAGE_SECONDS)
            r.start("results", 0)
            with grpc.insecure_channel(address) as ch:
                for tid in ids:
                    record(ch, tid, value=1)

        assert w.results(ids, 60, between=restart) == [1, 1, 1, 1]
        assert w.follower.opened >= 3, "the client opened streams through the outage"


def test_an_unreachable_platform_is_reported_not_waited_for(flavour):
    with unreachable_address() as address:
        w = Waiting(flavour, tasktide.ClientSettings.from_env({}, address=address))
        (got,) = w.results([uuid.uuid4().hex], 60)
    assert isinstance(got, tasktide.Unavailable), got
    assert "cannot reach tasktide" in str(got)


class _WaitOnly(results_pb2_grpc.ResultsServicer):
    """A results service of an older version: Wait, no Follow (UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.waits = 0

    def Wait(self, request, context):  # noqa: N802 - the gRPC method's name
        self.waits += 1
        return task_pb2.TaskResult(
            task_id=request.task_id, found=True, state=task_pb2.TASK_STATE_SUCCEEDED, result={"json": b'"old"'}
        )


def test_a_server_without_follow_gets_wait_calls(flavour):
    servicer = _WaitOnly()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    results_pb2_grpc.add_ResultsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        w = Waiting(flavour, tasktide.ClientSettings.from_env({}, address=f"127.0.0.1:{port}"))
        assert w.results([uuid.uuid4().hex, uuid.uuid4().hex], 30) == ["old", "old"]
        assert w.follower.unsupported
        assert servicer.waits == 2
    finally:
        server.stop(None)
