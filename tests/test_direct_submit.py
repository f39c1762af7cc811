"""Submission straight to the platform's Redis (TASKTIDE_SUBMIT_REDIS_URL, scheduler/direct.py): a
runnable task is queued without a call to the scheduler, refused with the scheduler's own errors,
and the tasks that need the scheduler still go to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from tasktide import AsyncClient, Client, ClientSettings, TaskState
from tasktide._exceptions import InvalidArgument, ResourceExhausted, Unavailable
from tasktide.v1 import task_pb2
from tasktide_services.common.redis_server import start_redis
from tasktide_services.testing import client_settings, run_worker_thread, unreachable_address
from tasktide_services.worker.keys import queue_keys
from tests.tasks_app import app


def _client(address: str, redis_url: str) -> Client:
    return Client(settings=client_settings(address, {"TASKTIDE_SUBMIT_REDIS_URL": redis_url}))


@pytest.fixture()
def direct(platform, redis_server) -> Iterator[Client]:
    with _client(platform.address, redis_server.url) as c:
        yield c


@pytest.fixture()
def no_scheduler(redis_server) -> Iterator[Client]:
    """Direct submission to the platform's Redis, with no scheduler at the client's address."""
    with unreachable_address() as nowhere, _client(nowhere, redis_server.url) as c:
        yield c


def test_a_task_is_queued_without_the_scheduler_and_runs(no_scheduler, client, queue_name):
    handle = no_scheduler.submit("t.add", [20, 22], queue=queue_name, priority=5)
    assert len(handle.id) == 32
    # The scheduler, asked later, finds it waiting in its queue, as it would after its own submit.
    assert client.get_task(handle.id).state == task_pb2.TASK_STATE_QUEUED
    assert client.status(handle.id) is TaskState.QUEUED
    with run_worker_thread(app, client.settings.address, queues=(queue_name,)):
        assert client.result(handle.id, timeout=20) == 42


def test_the_asyncio_client_queues_without_the_scheduler_too(redis_server, client, queue_name):
    async def submit(nowhere: str) -> str:
        settings = ClientSettings.from_env({"TASKTIDE_SUBMIT_REDIS_URL": redis_server.url}, address=nowhere)
        async with AsyncClient(settings=settings) as c:
            with pytest.raises(InvalidArgument, match="priority 101 is out of range"):
                await c.submit("t.add", [1, 2], queue=queue_name, priority=101)
            with pytest.raises(Unavailable, match="cannot reach tasktide"):
                await c.submit("t.add", [1, 2], queue=queue_name, countdown=1)
            return (await c.submit("t.add", [4, 5], queue=queue_name)).id

    with unreachable_address() as nowhere:
        task_id = asyncio.run(submit(nowhere))
    assert client.status(task_id) is TaskState.QUEUED
    with run_worker_thread(app, client.settings.address, queues=(queue_name,)):
        assert client.result(task_id, timeout=20) == 9


def test_tasks_that_need_the_scheduler_go_to_it(no_scheduler, direct, queue_name):
    for options in ({"countdown": 0.2}, {"idempotency_key": "k"}):
        with pytest.raises(Unavailable, match="cannot reach tasktide"):
            no_scheduler.submit("t.add", [1, 2], queue=queue_name, **options)
    key = f"{queue_name}-once"
    first = direct.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key)
    assert direct.submit("t.add", [1, 2], queue=queue_name, idempotency_key=key).id == first.id
    with run_worker_thread(app, direct.settings.address, queues=(queue_name,)):
        assert direct.submit("t.add", [2, 3], queue=queue_name, countdown=0.2).get(timeout=20) == 5
        assert direct.submit("t.add", [3, 4], queue=queue_name).get(timeout=20) == 7
        assert first.get(timeout=20) == 3


def test_refusals_are_the_schedulers_own(no_scheduler, client, queue_name):
    for bad, error in (
        ({"name": "not a valid name!"}, InvalidArgument),
        ({"name": "t.add", "priority": 101}, InvalidArgument),
        ({"name": "t.add", "args": ["x" * (2 * 1024 * 1024)]}, ResourceExhausted),
    ):
        name = str(bad.pop("name"))
        args = bad.pop("args", [1, 2])
        with pytest.raises(error) as direct_refusal:
            no_scheduler.submit(name, args, queue=queue_name, **bad)
        with pytest.raises(error) as scheduler_refusal:
            client.submit(name, args, queue=queue_name, **bad)
        assert str(direct_refusal.value) == str(scheduler_refusal.value)


def test_scripts_lost_by_redis_are_loaded_again(direct, redis_server, queue_name):
    redis.Redis(port=redis_server.port).script_flush()
    handle = direct.submit("t.add", [5, 6], queue=queue_name)
    with run_worker_thread(app, direct.settings.address, queues=(queue_name,)):
        assert handle.get(timeout=20) == 11


def test_a_redis_out_of_reach_is_a_clear_error(platform):
    with unreachable_address() as nowhere, _client(platform.address, f"redis://:secret@{nowhere}/0") as c:
        expected = r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0 to submit t\.add"
        with pytest.raises(Unavailable, match=expected) as refusal:
            c.submit("t.add", [1, 2])
    assert "secret" not in str(refusal.value)


def test_submissions_from_many_threads(direct, queue_name):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(lambda i: direct.submit("t.add", [i, 1], queue=queue_name), range(200)))
    assert len({h.id for h in handles}) == 200
    with run_worker_thread(app, direct.settings.address, queues=(queue_name,)):
        assert [h.get(timeout=20) for h in handles] == [i + 1 for i in range(200)]


def test_a_restarted_redis_keeps_what_was_confirmed_and_takes_new_tasks(tmp_path):
    """Redis (append-only) stops and comes back on its port: the task confirmed before is still
    queued, a submission while it is down is refused, and the next one reconnects."""
    server = start_redis(tmp_path)
    port = server.port
    try:
        with unreachable_address() as nowhere, _client(nowhere, server.url) as c:
            before = c.submit("t.add", [1, 1], queue="restart")
            server.stop()
            with pytest.raises(Unavailable, match="cannot reach Redis"):
                c.submit("t.add", [2, 2], queue="restart")
            server = start_redis(tmp_path, port=port)
            after = c.submit("t.add", [3, 3], queue="restart")
        ready = redis.Redis(port=port).zrange(queue_keys("restart").ready, 0, -1)
        assert sorted(r.decode() for r in ready) == sorted([before.id, after.id])
    finally:
        server.stop()


def test_the_asyncio_client_submits_at_once_after_redis_restarted_under_idle_connections(tmp_path):
    """Redis restarts while the asyncio client's pooled connections sit idle: each is found closed
    when it is next taken and opened again before the submission is sent, so none is refused.
    With redis-py's default (its maintenance notifications on), that check is skipped and the first
    submission on each such connection was refused ("cannot reach Redis")."""
    server = start_redis(tmp_path)
    port = server.port

    async def main(nowhere: str) -> list[str]:
        nonlocal server
        settings = ClientSettings.from_env({"TASKTIDE_SUBMIT_REDIS_URL": server.url}, address=nowhere)
        async with AsyncClient(settings=settings) as c:
            await asyncio.gather(*(c.submit("t.add", [i, i], queue="restart-async") for i in range(8)))
            server.stop()
            server = start_redis(tmp_path, port=port)
            await asyncio.sleep(0.2)  # the loop sees the old connections closed
            got = await asyncio.gather(
                *(c.submit("t.add", [i, i], queue="restart-async") for i in range(8)), return_exceptions=True
            )
            return [repr(g) for g in got if isinstance(g, BaseException)]

    try:
        with unreachable_address() as nowhere:
            assert asyncio.run(main(nowhere)) == []
        assert redis.Redis(port=port).zcard(queue_keys("restart-async").ready) == 16
    finally:
        server.stop()
