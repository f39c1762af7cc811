"""At-least-once delivery: leases, redelivery after a worker dies, fencing of stale outcomes, drain."""

from __future__ import annotations

import json
import signal
import uuid

import grpc
import pytest

import tasktide
from tasktide import TaskState
from tasktide.v1 import task_pb2, worker_pb2, worker_pb2_grpc
from tasktide_services.testing import TEST_LEASE_SECONDS, client_settings, eventually, spawn


def _wait_for(predicate, timeout: float, what: str) -> None:
    eventually(predicate, timeout=timeout, interval=0.05, what=what)


def _final_events(client, task_id):
    return [e for e in client.watch([task_id]) if TaskState.from_proto(e.state).is_final]


def test_sigkilled_worker_task_is_redelivered_and_recorded_once(platform, client, queue_name, tmp_path):
    env = {"TASKTIDE_ADDRESS": platform.address}
    markers = tmp_path / "starts"
    markers.mkdir()
    h = client.submit("t.slow", [TEST_LEASE_SECONDS + 1.5, str(markers)], queue=queue_name)
    first = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, "--concurrency", "1", env=env)
    try:
        _wait_for(lambda: len(list(markers.iterdir())) == 1, 20, "the first worker to start the task")
        # RUNNING is recorded after the assignment is sent (worker/session.py): it may follow the start.
        _wait_for(lambda: h.status() is TaskState.RUNNING, 20, "RUNNING to be recorded")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, "--concurrency", "1", env=env)
        try:
            assert h.get(timeout=30) == f"slept {TEST_LEASE_SECONDS + 1.5}"
        finally:
            second.terminate()
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    assert len(list(markers.iterdir())) == 2, "the task ran once on each worker"
    finals = _final_events(client, h.id)
    assert [TaskState.from_proto(e.state) for e in finals] == [TaskState.SUCCEEDED]


def _session(address: str, queue: str):
    channel = grpc.insecure_channel(address)
    stub = worker_pb2_grpc.RegistryStub(channel)
    outbox: list[worker_pb2.WorkerMessage] = []
    import queue as q

    requests: q.Queue = q.Queue()
    requests.put(
        worker_pb2.WorkerMessage(hello=worker_pb2.Hello(worker_id=f"w-{uuid.uuid4().hex[:6]}", queues=[queue]))
    )
    requests.put(worker_pb2.WorkerMessage(credit=1))

    def gen():
        while True:
            m = requests.get()
            if m is None:
                return
            outbox.append(m)
            yield m

    responses = stub.Session(gen())
    return channel, requests, responses


def _next_assignment(responses) -> worker_pb2.Assignment:
    for msg in responses:
        if msg.WhichOneof("kind") == "assignments":
            return msg.assignments.assignments[0]
    raise AssertionError("stream ended without an assignment")


def _outcome(a: worker_pb2.Assignment, value: object) -> worker_pb2.WorkerMessage:
    out = task_pb2.Outcome(
        task_id=a.task.id,
        queue=a.task.spec.queue,
        lease_token=a.lease_token,
        kind=task_pb2.OUTCOME_KIND_SUCCESS,
        result=task_pb2.Payload(json=json.dumps(value).encode()),
    )
    return worker_pb2.WorkerMessage(outcomes=worker_pb2.OutcomeBatch(outcomes=[out], credit=1))


def test_outcome_with_stale_lease_token_is_rejected(platform, client, queue_name):
    h = client.submit("t.add", [1, 2], queue=queue_name)
    ch1, req1, resp1 = _session(platform.registry_address, queue_name)
    a1 = _next_assignment(resp1)
    assert a1.task.id == h.id and a1.delivery == 1
    # The first worker goes silent: no heartbeat. Its lease expires and the task is redelivered.
    ch2, req2, resp2 = _session(platform.registry_address, queue_name)
    a2 = _next_assignment(resp2)
    assert a2.task.id == h.id and a2.delivery == 2
    assert a2.lease_token > a1.lease_token
    req2.put(_outcome(a2, "from the redelivery"))
    assert h.get(timeout=10) == "from the redelivery"
    # The presumed-dead worker wakes up and reports: rejected, the result stands.
    req1.put(_outcome(a1, "from the stale worker"))
    for msg in resp1:
        if msg.WhichOneof("kind") == "rejected":
            assert msg.rejected.lease.task_id == h.id
            assert "stale" in msg.rejected.reason
            break
    assert h.get(timeout=10) == "from the redelivery"
    assert [TaskState.from_proto(e.state) for e in _final_events(client, h.id)] == [TaskState.SUCCEEDED]
    for req, ch in ((req1, ch1), (req2, ch2)):
        req.put(None)
        ch.close()


@pytest.mark.parametrize("how", ["sigterm", "drain_worker"])
def test_a_stopped_worker_drains_running_tasks_and_releases_the_rest(platform, client, queue_name, tmp_path, how):
    """SIGTERM, or DrainWorker (the dashboard's and `tasktide workers drain`'s): the worker finishes
    what runs, gives back what it had not started, and its process ends with 0."""
    env = {"TASKTIDE_ADDRESS": platform.address}
    markers = tmp_path / "starts"
    markers.mkdir()
    handles = [client.submit("t.slow", [1.0, str(markers)], queue=queue_name) for _ in range(4)]
    w = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, "--concurrency", "1", "--prefetch", "3", env=env)
    try:
        _wait_for(lambda: len(list(markers.iterdir())) == 1, 20, "the first task to start")
        if how == "sigterm":
            w.send_signal(signal.SIGTERM)
        else:
            (info,) = [i for i in client.workers() if list(i.queues) == [queue_name]]
            assert info.pid == w.pid
            assert client.drain_worker(info.worker_id) == 1
        assert w.wait(20) == 0
    finally:
        if w.poll() is None:
            w.kill()
    _wait_for(lambda: [h.status() for h in handles].count(TaskState.QUEUED) == 3, 10, "released tasks QUEUED")
    states = [h.status() for h in handles]
    assert states.count(TaskState.SUCCEEDED) == 1, states  # the running one finished
    if how == "drain_worker":
        _wait_for(lambda: info.worker_id not in [i.worker_id for i in client.workers()], 10, "the worker to leave")
        with pytest.raises(tasktide.NotFound, match="no worker .* is connected"):
            client.drain_worker(info.worker_id)
    # The three prefetched tasks were released at once, not left to expire.
    w2 = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, "--concurrency", "3", env=env)
    try:
        assert [h.get(timeout=20) for h in handles] == ["slept 1.0"] * 4
        starts = [m.name.split("-") for m in markers.iterdir()]
        assert len(starts) == 4, "no task ran twice"
        # start-PID-DELIVERY-NS: a released lease does not count as a delivery, an expired one would.
        assert [s[2] for s in starts] == ["1"] * 4, starts
    finally:
        w2.terminate()
        w2.wait(20)


def test_a_drain_whose_message_its_replica_missed_is_sent_at_the_next_refresh(
    platform, client, queue_name, server_settings, monkeypatch
):
    """DrainWorker keeps the sessions it asks to drain (tt:w:draining) beside its message: a replica
    that missed the message (cut off from Redis at that moment) sends the Drain when it next
    refreshes the session's worker entry. Here only the kept part is written, as if the message had
    reached no one."""
    from tasktide_services.worker import keys
    from tasktide_services.worker import service as registry_service
    from tests.processes import redis_command

    monkeypatch.setattr(registry_service, "WORKER_REFRESH_SECONDS", 0.2)  # in this process's services
    env = {"TASKTIDE_ADDRESS": platform.address}
    w = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, env=env)
    try:
        _wait_for(lambda: any(list(i.queues) == [queue_name] for i in client.workers()), 20, "the worker to connect")
        (info,) = [i for i in client.workers() if list(i.queues) == [queue_name]]
        redis_command(server_settings.redis_url, "SADD", keys.DRAINING, info.session_id)
        assert w.wait(30) == 0  # drained (every 10 s refresh where the services run apart)
        _wait_for(
            lambda: not redis_command(server_settings.redis_url, "SISMEMBER", keys.DRAINING, info.session_id),
            10,
            "the ended session forgotten",
        )
    finally:
        if w.poll() is None:
            w.kill()


@pytest.mark.parametrize("worker_id", ["", "x" * 257])
def test_drain_worker_refuses_a_malformed_id(client, worker_id):
    with pytest.raises(tasktide.InvalidArgument, match="a worker id is 1..256 characters"):
        client.drain_worker(worker_id)


@pytest.mark.parametrize("restart", ["platform"])
def test_nothing_acknowledged_is_lost_when_services_restart(redis_server, server_settings, restart, queue_name):
    from tasktide import Client, ClientSettings
    from tasktide_services.testing import PlatformThread, run_worker_thread
    from tests.tasks_app import app

    p1 = PlatformThread(server_settings).start()
    with Client(settings=ClientSettings.from_env({}, address=p1.address)) as c:
        handles = [c.submit("t.add", [i, i], queue=queue_name) for i in range(50)]
    p1.stop()
    p2 = PlatformThread(server_settings).start()
    try:
        with Client(settings=ClientSettings.from_env({}, address=p2.address)) as c:
            with run_worker_thread(app, p2.address, queues=(queue_name,)):
                assert [c.result(h.id, timeout=20) for h in handles] == [2 * i for i in range(50)]
    finally:
        p2.stop()


def test_the_services_carry_on_after_redis_restarts(tmp_path, server_settings, queue_name):
    """Redis (with its append-only file) stops and comes back on the same port under running
    services: what was acknowledged before is still there, and new tasks run on the new connections."""
    from dataclasses import replace

    from tasktide import Client, ServiceError
    from tasktide_services.common.redis_server import start_redis
    from tasktide_services.testing import PlatformThread, run_worker_thread
    from tests.tasks_app import app

    data = tmp_path / "redis"
    r1 = start_redis(data, appendonly=True)
    platform = PlatformThread(replace(server_settings, redis_url=r1.url)).start()
    try:
        with Client(settings=client_settings(platform.address)) as c:
            before = [c.submit("t.add", [i, i], queue=queue_name) for i in range(20)]
            r1.stop()
            r2 = start_redis(data, port=r1.port, appendonly=True)
            try:

                def submit_after() -> object:
                    try:  # the first calls may meet the restart; a caller retries a refused submit
                        return c.submit("t.add", [100, 1], queue=queue_name)
                    except ServiceError:
                        return None

                after = eventually(submit_after, timeout=20, interval=0.2, what="the services to reconnect to Redis")
                with run_worker_thread(app, platform.address, queues=(queue_name,)):
                    assert [c.result(h.id, timeout=20) for h in before] == [2 * i for i in range(20)]
                    assert after.get(timeout=20) == 101
            finally:
                r2.stop()
    finally:
        platform.stop()
