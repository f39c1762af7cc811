"""The blocking Python client's waits over Results.Follow (clients/python/tasktide/_following.py):
one stream shared by every waiting thread, a wait that times out taken off it, waits that outlive a
restart of the results service, an unreachable platform reported as such, and Wait calls for a
server without Follow."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import pytest

import tasktide
from tasktide.v1 import results_pb2_grpc, task_pb2
from tasktide_services.testing import client_settings, run_worker_thread, spawn, unreachable_address
from tests.processes import ROOT, own_redis, stop, wait_serving
from tests.tasks_app import app
from tests.test_follow import record


def test_many_threads_wait_on_one_stream(platform, queue_name):
    with tasktide.Client(settings=client_settings(platform.address)) as client:
        with run_worker_thread(app, platform.address, queues=(queue_name,)):
            handles = [client.submit("t.add", [i, i], queue=queue_name) for i in range(60)]
            with futures.ThreadPoolExecutor(30) as pool:
                got = list(pool.map(lambda h: h.get(timeout=60), handles))
        assert got == [2 * i for i in range(60)]
        assert client._follower.opened == 1
        assert not client._follower._waiters
        assert handles[5].get(timeout=10) == 10  # answered again when waited for again


def test_a_wait_that_times_out_is_taken_off_the_stream(platform, queue_name):
    with tasktide.Client(settings=client_settings(platform.address)) as client:
        h = client.submit("t.add", [4, 4], queue=queue_name)  # no worker yet
        with pytest.raises(tasktide.TaskTimeout):
            h.get(timeout=0.3)
        assert not client._follower._waiters
        with run_worker_thread(app, platform.address, queues=(queue_name,)):
            assert h.get(timeout=60) == 8


def test_waits_outlive_a_restart_of_the_results_service(tmp_path: Path) -> None:
    folder = tempfile.mkdtemp(prefix="tt-")  # short: a socket path has a length limit
    address = f"unix:{folder}/results.sock"
    ids = [uuid.uuid4().hex for _ in range(4)]
    with own_redis(tmp_path / "redis") as redis_url:
        env = {"TASKTIDE_REDIS_URL": redis_url, "TASKTIDE_LISTEN": address}

        def start() -> subprocess.Popen[str]:
            proc = spawn("results", env=env, cwd=ROOT)
            wait_serving(address, proc)
            return proc

        results = start()
        client = tasktide.Client(settings=tasktide.ClientSettings.from_env({}, address=address))
        answers: dict[str, object] = {}

        def wait(tid: str) -> None:
            try:
                answers[tid] = client.result(tid, timeout=60)
            except Exception as exc:  # noqa: BLE001 - the test reports it
                answers[tid] = exc

        threads = [threading.Thread(target=wait, args=(tid,)) for tid in ids]
        try:
            for t in threads:
                t.start()
            with grpc.insecure_channel(address) as ch:
                record(ch, ids[0], value=0)
            threads[0].join(30)
            assert answers.get(ids[0]) == 0
            results.send_signal(signal.SIGKILL)
            results.wait(10)
            Path(folder, "results.sock").unlink(missing_ok=True)
            results = start()
            with grpc.insecure_channel(address) as ch:
                for tid in ids[1:]:
                    record(ch, tid, value=1)
            for t in threads:
                t.join(60)
            assert answers == {ids[0]: 0, ids[1]: 1, ids[2]: 1, ids[3]: 1}
            assert client._follower.opened >= 2, "the client opened a new stream"
        finally:
            client.close()
            stop([results])


def test_an_unreachable_platform_is_reported_not_waited_for():
    with (
        unreachable_address() as address,
        tasktide.Client(settings=tasktide.ClientSettings.from_env({}, address=address)) as client,
    ):
        with pytest.raises(tasktide.Unavailable) as info:
            client.result(uuid.uuid4().hex, timeout=60)
    assert "cannot reach tasktide" in str(info.value)


class _WaitOnly(results_pb2_grpc.ResultsServicer):
    """A results service of an older version: Wait, no Follow (UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.waits = 0

    def Wait(self, request, context):  # noqa: N802 - the gRPC method's name
        self.waits += 1
        return task_pb2.TaskResult(
            task_id=request.task_id, found=True, state=task_pb2.TASK_STATE_SUCCEEDED, result={"json": b'"old"'}
        )


def test_a_server_without_follow_gets_wait_calls():
    servicer = _WaitOnly()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    results_pb2_grpc.add_ResultsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with tasktide.Client(settings=tasktide.ClientSettings.from_env({}, address=f"127.0.0.1:{port}")) as client:
            assert [client.result(uuid.uuid4().hex, timeout=30) for _ in range(2)] == ["old", "old"]
            assert client._follower.unsupported
            assert servicer.waits == 2
    finally:
        server.stop(None)
