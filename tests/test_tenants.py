"""Namespaces: the credential's namespace owns what it makes, and one namespace never sees another's
tasks (NOT_FOUND, as for an unknown id), dead letters, queues, workers or schedules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
import redis

import tasktide
from tasktide import Client, ClientSettings
from tasktide.v1 import results_pb2, results_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from tasktide_services.common.auth import mint
from tasktide_services.common.settings import ServerSettings
from tasktide_services.scheduler.keys import idem as idem_key
from tasktide_services.testing import PlatformThread, eventually, spawn
from tests.conftest import ROOT
from tests.processes import stop

KEY = b"n" * 40


@pytest.fixture(scope="module")
def secured(server_settings: ServerSettings) -> Iterator[PlatformThread]:
    with PlatformThread(replace(server_settings, auth_key=KEY.decode())) as p:
        yield p


def client_for(platform: PlatformThread, namespace: str, role: str = "producer", **kw: object) -> Client:
    token = mint(KEY, namespace=namespace, role=role, **kw)  # type: ignore[arg-type]
    return Client(settings=ClientSettings(address=platform.address, token=token))


def md(namespace: str, role: str = "producer") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {mint(KEY, namespace=namespace, role=role)}")]


def test_a_task_of_another_namespace_is_not_found(secured: PlatformThread, queue_name: str) -> None:
    with client_for(secured, "alpha") as alpha:
        tid = alpha.submit("t.add", [1, 2], queue=queue_name).id
        assert alpha.get_task(tid).id == tid
    other = md("beta")
    with grpc.insecure_channel(secured.address) as ch:
        scheduler = scheduler_pb2_grpc.SchedulerStub(ch)
        results = results_pb2_grpc.ResultsStub(ch)
        calls = {
            "GetTask": lambda: scheduler.GetTask(scheduler_pb2.GetTaskRequest(task_id=tid), metadata=other),
            "Cancel": lambda: scheduler.Cancel(scheduler_pb2.CancelRequest(task_id=tid), metadata=other),
            "Explain": lambda: scheduler.Explain(scheduler_pb2.ExplainRequest(task_id=tid), metadata=other),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.NOT_FOUND, name
            assert info.value.details() == f"no task with id {tid}", name
        # The results service knows the task once it has run or been cancelled: cancel it as alpha.
        with client_for(secured, "alpha") as alpha:
            alpha.cancel(tid)
        (res,) = results.Get(results_pb2.GetRequest(task_ids=[tid]), metadata=other).results
        assert not res.found
        (mine,) = results.Get(results_pb2.GetRequest(task_ids=[tid]), metadata=md("alpha")).results
        assert mine.found
        for name, call in {
            "Wait": lambda: results.Wait(results_pb2.WaitRequest(task_id=tid, timeout=1), metadata=other),
            "Watch": lambda: list(results.Watch(results_pb2.WatchRequest(task_ids=[tid]), metadata=other)),
            "WatchBatches": lambda: list(
                results.WatchBatches(results_pb2.WatchRequest(task_ids=[tid]), metadata=other)
            ),
        }.items():
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.NOT_FOUND, name


def test_the_same_idempotency_key_in_two_namespaces_makes_two_tasks(
    secured: PlatformThread, server_settings: ServerSettings, queue_name: str
) -> None:
    with client_for(secured, "alpha") as alpha, client_for(secured, "beta") as beta:
        a1 = alpha.submit("t.add", [1, 1], queue=queue_name, idempotency_key="order-7").id
        a2 = alpha.submit("t.add", [1, 1], queue=queue_name, idempotency_key="order-7").id
        b1 = beta.submit("t.add", [1, 1], queue=queue_name, idempotency_key="order-7").id
    assert a1 == a2
    assert b1 != a1
    # Each namespace's key is its own in Redis, confirmed by the write (no pending claim left).
    r = redis.Redis.from_url(server_settings.redis_url)
    try:
        assert r.get(idem_key("alpha~order-7")) == a1.encode()
        assert r.get(idem_key("beta~order-7")) == b1.encode()
    finally:
        r.close()


def test_queues_workers_dead_letters_and_schedules_stay_in_their_namespace(
    secured: PlatformThread, queue_name: str
) -> None:
    with client_for(secured, "alpha") as alpha:
        alpha.submit("t.add", [1, 1], queue=queue_name)
    with client_for(secured, "alpha", "admin") as admin_a, client_for(secured, "beta", "admin") as admin_b:
        admin_a.put_schedule(f"nightly-{queue_name}", "t.add", args=[1, 2], cron="0 3 * * *", queue=queue_name)
        assert queue_name in {q.queue for q in admin_a.queue_stats()}
        assert not any(queue_name in q.queue for q in admin_b.queue_stats())
        assert f"nightly-{queue_name}" in {s.name for s in admin_a.list_schedules()}
        assert not any(queue_name in s.name for s in admin_b.list_schedules())
        with pytest.raises(tasktide.NotFound):
            admin_b.pause_schedule(f"nightly-{queue_name}")
        assert admin_b.dead_letters() == [] or all(
            d.queue == "" or "alpha" not in d.queue for d in admin_b.dead_letters()
        )
        admin_a.delete_schedule(f"nightly-{queue_name}")


def test_a_worker_runs_its_namespace_tasks_only_on_the_queues_its_token_allows(
    secured: PlatformThread, queue_name: str
) -> None:
    worker_token = mint(KEY, namespace="alpha", role="worker", queues=[queue_name])
    env = {"TASKTIDE_ADDRESS": secured.address, "TASKTIDE_TOKEN": worker_token}
    worker = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, env=env, cwd=ROOT)
    try:
        with client_for(secured, "alpha") as alpha, client_for(secured, "beta") as beta:
            assert alpha.submit("t.add", [2, 3], queue=queue_name).get(timeout=60) == 5
            stranger = beta.submit("t.add", [4, 4], queue=queue_name)
            with client_for(secured, "beta", "admin") as admin_b:
                stats = eventually(lambda: [q for q in admin_b.queue_stats() if q.queue == queue_name])
                assert stats[0].ready == 1 and stats[0].consumers == 0  # beta's queue of that name waits
            assert beta.status(stranger.id) is tasktide.TaskState.QUEUED
            with client_for(secured, "alpha", "admin") as admin_a:
                (mine,) = [w for w in admin_a.workers() if list(w.queues) == [queue_name]]
                with client_for(secured, "beta", "admin") as admin_b:  # another namespace's worker
                    with pytest.raises(tasktide.NotFound):
                        admin_b.drain_worker(mine.worker_id)
                    with pytest.raises(tasktide.NotFound):
                        admin_b.resize_worker(mine.worker_id, 3)
                assert admin_a.resize_worker(mine.worker_id, 3) == 1
                eventually(lambda: [w.concurrency for w in admin_a.workers() if w.worker_id == mine.worker_id] == [3])
                assert admin_a.drain_worker(mine.worker_id) == 1
                assert worker.wait(30) == 0
    finally:
        stop([worker])
    other = mint(KEY, namespace="alpha", role="worker", queues=["elsewhere"])
    env = {"TASKTIDE_ADDRESS": secured.address, "TASKTIDE_TOKEN": other}
    refused = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, env=env, cwd=ROOT)
    assert refused.wait(60) == 2


def test_streams_of_two_namespaces_admitted_together_keep_their_namespaces(
    secured: PlatformThread, queue_name: str
) -> None:
    """Submissions of every open stream are admitted together (scheduler/submissions.py): two
    namespaces submitting at once each own exactly the tasks they submitted."""
    import threading

    from tasktide._exceptions import NotFound

    ids: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def run(namespace: str) -> None:
        with client_for(secured, namespace) as c:
            c.submit("t.add", [0, 0], queue=queue_name)  # stream open
            start.wait()
            ids[namespace] = [c.submit("t.add", [i, i], queue=queue_name).id for i in range(40)]

    threads = [threading.Thread(target=run, args=(ns,)) for ns in ("alpha", "beta")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with client_for(secured, "alpha") as alpha, client_for(secured, "beta") as beta:
        for mine, other, theirs in ((alpha, beta, ids["alpha"]), (beta, alpha, ids["beta"])):
            for tid in theirs:
                assert mine.get_task(tid).id == tid
                with pytest.raises(NotFound):
                    other.get_task(tid)


def test_a_batch_of_submissions_in_one_message_belongs_to_the_streams_namespace(
    secured: PlatformThread, queue_name: str
) -> None:
    """Every entry of a SubmitStream batch is admitted in the namespace of the stream's token."""
    from tasktide._exceptions import NotFound
    from tasktide.v1 import task_pb2

    entries = [
        scheduler_pb2.SubmitStreamRequest(seq=i, spec=task_pb2.TaskSpec(name="t.add", queue=queue_name))
        for i in range(1, 6)
    ]
    with grpc.insecure_channel(secured.address) as ch:
        call = scheduler_pb2_grpc.SchedulerStub(ch).SubmitStream(
            iter([scheduler_pb2.SubmitStreamRequest(batch=entries)]), metadata=md("alpha")
        )
        answers = [a for m in call for a in (m.batch or [m])]
    assert sorted(a.seq for a in answers) == [1, 2, 3, 4, 5]
    ids = [a.result.task_id for a in answers]
    assert all(len(i) == 32 for i in ids)
    with client_for(secured, "alpha") as alpha, client_for(secured, "beta") as beta:
        for tid in ids:
            assert alpha.get_task(tid).id == tid
            with pytest.raises(NotFound):
                beta.get_task(tid)
