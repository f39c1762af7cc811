"""ListTasks against a platform of its own (its own Redis, so the index holds only this module's
tasks): 1,000 tasks of mixed outcomes listed by state from the client and the command line, newest
first; paging with the cursor returns every task once; filters and counts; each task's wait and
run time (ready_ms, started_ms)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest

import tasktide
from tasktide import Client, ClientSettings, TaskState
from tasktide.v1 import results_pb2, results_pb2_grpc
from tasktide_services.common.auth import mint
from tasktide_services.common.redis_server import start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import PlatformThread, eventually, run_worker_thread
from tests.conftest import ROOT
from tests.tasks_app import app as tasks_app

N = 1000


@pytest.fixture(scope="module")
def own_platform(server_settings: ServerSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformThread]:
    redis = start_redis(tmp_path_factory.mktemp("redis-list"), appendonly=False)
    with PlatformThread(replace(server_settings, redis_url=redis.url)) as p:
        yield p
    redis.stop()


@pytest.fixture(scope="module")
def ran(own_platform: PlatformThread) -> Iterator[dict[str, set[str]]]:
    """N tasks on queue "mixed": every third fails (ValueError), the others succeed."""
    app = tasktide.App("lt", address=own_platform.address)
    add = app.task(name="lt.add")(lambda x, y: x + y)

    def boom(message: str) -> None:
        raise ValueError(message)

    fail = app.task(name="lt.boom")(boom)
    handles = {"ok": [], "failed": []}
    with run_worker_thread(app, own_platform.address, queues=("mixed",), concurrency=8, worker_id="w-list"):
        for i in range(N):
            if i % 3 == 0:
                handles["failed"].append(fail.apply_async(args=(f"no {i}",), queue="mixed"))
            else:
                handles["ok"].append(add.apply_async(args=(i, i), queue="mixed"))
        for h in handles["ok"]:
            h.get(timeout=120)
        for h in handles["failed"]:
            with pytest.raises(tasktide.TaskFailed):
                h.get(timeout=120)
    app.close()
    yield {k: {h.id for h in v} for k, v in handles.items()}


@pytest.fixture()
def own_client(own_platform: PlatformThread) -> Iterator[Client]:
    with Client(settings=ClientSettings.from_env({}, address=own_platform.address)) as c:
        yield c


def _all_pages(client: Client, limit: int, **kw: object) -> list[results_pb2.ListTasksResponse]:
    pages, cursor = [], ""
    while True:
        page = client.list_tasks(limit=limit, cursor=cursor, **kw)  # type: ignore[arg-type]
        pages.append(page)
        cursor = page.next_cursor
        if not cursor:
            return pages


def test_the_failed_ones_exactly_newest_first(ran, own_client: Client) -> None:
    page = own_client.list_tasks("FAILED", limit=1000)
    ids = [r.task_id for r in page.tasks]
    assert set(ids) == ran["failed"] and len(ids) == len(ran["failed"])
    assert page.next_cursor == ""
    times = [r.updated_ms for r in page.tasks]
    assert times == sorted(times, reverse=True)
    assert all(r.state == TaskState.FAILED.value and r.error.type.endswith("ValueError") for r in page.tasks)


def test_paging_with_the_cursor_returns_every_task_once(ran, own_client: Client) -> None:
    pages = _all_pages(own_client, limit=37)
    ids = [r.task_id for p in pages for r in p.tasks]
    assert len(ids) == N == len(set(ids))
    assert set(ids) == ran["ok"] | ran["failed"]
    assert all(len(p.tasks) == 37 for p in pages[:-1])
    times = [r.updated_ms for p in pages for r in p.tasks]
    assert times == sorted(times, reverse=True)


def test_filters_and_counts(ran, own_client: Client) -> None:
    by_name = own_client.list_tasks(name="lt.add", limit=1000)
    assert {r.task_id for r in by_name.tasks} == ran["ok"]
    by_error = own_client.list_tasks(error_type="ValueError", limit=1000)
    assert {r.task_id for r in by_error.tasks} == ran["failed"]
    assert len(own_client.list_tasks(worker_id="w-list", limit=1000).tasks) == N
    assert own_client.list_tasks(worker_id="someone-else").tasks == []
    assert own_client.list_tasks(queue="elsewhere").tasks == []
    both = own_client.list_tasks([TaskState.SUCCEEDED, TaskState.FAILED], queue="mixed", limit=1000)
    assert len(both.tasks) == N
    counted = own_client.list_tasks(limit=1, counts=True)
    assert dict(counted.counts_by_state) == {
        "TASK_STATE_SUCCEEDED": len(ran["ok"]),
        "TASK_STATE_FAILED": len(ran["failed"]),
    }
    assert dict(counted.counts_by_name) == {"lt.add": len(ran["ok"]), "lt.boom": len(ran["failed"])}


def test_the_command_line_lists_the_failed_ones(ran, own_platform: PlatformThread) -> None:
    env = {**os.environ, "TASKTIDE_ADDRESS": own_platform.address}
    cmd = [sys.executable, "-m", "tasktide.cli", "tasks", "list", "--state", "FAILED"]
    res = subprocess.run([*cmd, "--all"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert {o["id"] for o in lines} == ran["failed"] and len(lines) == len(ran["failed"])
    assert all(o["state"] == "FAILED" and o["error"]["type"] == "ValueError" for o in lines)
    times = [o["updated_ms"] for o in lines]
    assert times == sorted(times, reverse=True)
    # One page at a time: the last line names the cursor of the next.
    first = subprocess.run([*cmd, "--limit", "10"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    out = [json.loads(line) for line in first.stdout.splitlines()]
    assert [o["id"] for o in out[:10]] == [o["id"] for o in lines[:10]]
    cursor = out[10]["next_cursor"]
    second = subprocess.run(
        [*cmd, "--limit", "10", "--cursor", cursor], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert [json.loads(line)["id"] for line in second.stdout.splitlines()[:10]] == [o["id"] for o in lines[10:20]]
    bad = subprocess.run([*cmd, "--state", "NOPE"], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "unknown task state" in bad.stderr


def test_each_task_has_its_wait_and_run_time(ran, own_client: Client) -> None:
    listed = own_client.list_tasks(limit=1000).tasks
    assert len(listed) == N
    # Known where the index saw the task's events within one time bucket (an hour): all of them
    # unless the run crossed the hour.
    timed = [r for r in listed if r.ready_ms and r.started_ms]
    assert len(timed) >= N * 0.95, len(timed)
    for r in timed:
        assert r.created_ms <= r.ready_ms <= r.started_ms <= r.updated_ms, r


def test_wait_and_run_time_of_a_task_that_waited_for_a_worker(own_platform: PlatformThread, own_client: Client) -> None:
    q = f"late-{uuid.uuid4().hex[:8]}"
    handle = own_client.submit("t.slow", [0.3], queue=q)
    assert own_client.status(handle.id) is TaskState.QUEUED
    time.sleep(0.5)  # no worker for this queue yet: the task waits at least this long
    with run_worker_thread(tasks_app, own_platform.address, queues=(q,)):
        handle.get(timeout=60)
    (r,) = eventually(lambda: [r for r in own_client.list_tasks("SUCCEEDED", queue=q).tasks if r.started_ms])
    assert r.task_id == handle.id
    assert r.started_ms - r.ready_ms >= 500  # wait time
    assert r.updated_ms - r.started_ms >= 300  # run time: the task slept 0.3 s
    assert r.ready_ms == r.created_ms  # runnable at once: ready when submitted


def test_bad_requests_get_invalid_argument(own_platform: PlatformThread) -> None:
    with grpc.insecure_channel(own_platform.address) as ch:
        results = results_pb2_grpc.ResultsStub(ch)
        for req, message in (
            (results_pb2.ListTasksRequest(cursor="not a cursor!"), "cursor"),
            (results_pb2.ListTasksRequest(limit=5000), "limit"),
            (results_pb2.ListTasksRequest(states=[42]), "unknown task state"),  # type: ignore[list-item]
            (results_pb2.ListTasksRequest(since_ms=10, until_ms=5), "since_ms"),
            (results_pb2.ListTasksRequest(name="x" * 1000), "name"),
        ):
            with pytest.raises(grpc.RpcError) as info:
                results.ListTasks(req)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
            assert message in (info.value.details() or ""), message


def test_a_window_reaching_far_ahead_reads_only_the_retention(ran, own_platform: PlatformThread) -> None:
    """An until_ms or a cursor at the end of time: the listing and the counts answer from the
    buckets of the retention (they once walked every bucket up to that time, which never ends)."""
    far = 2**63 - 1
    cursor = base64.urlsafe_b64encode(f"{far}:".encode()).decode().rstrip("=")
    with grpc.insecure_channel(own_platform.address) as ch:
        results = results_pb2_grpc.ResultsStub(ch)
        listed = results.ListTasks(results_pb2.ListTasksRequest(until_ms=far, limit=5), timeout=30)
        resumed = results.ListTasks(results_pb2.ListTasksRequest(cursor=cursor, limit=5), timeout=30)
        counted = results.ListTasks(results_pb2.ListTasksRequest(until_ms=far, limit=1, counts=True), timeout=30)
    assert len(listed.tasks) == 5 and len(resumed.tasks) == 5
    assert [t.task_id for t in listed.tasks] == [t.task_id for t in resumed.tasks]
    assert sum(counted.counts_by_state.values()) >= 5


def test_a_task_that_changes_now_is_listed_first(ran, own_client: Client) -> None:
    tid = own_client.submit("lt.add", [1, 1], queue="nobody-consumes").id
    own_client.cancel(tid)
    first = eventually(lambda: own_client.list_tasks(limit=1).tasks[0], timeout=30)
    eventually(lambda: own_client.list_tasks(limit=1).tasks[0].task_id == tid, timeout=30)
    assert first.task_id == tid or own_client.list_tasks(limit=1).tasks[0].state == TaskState.CANCELLED.value
    assert [r.task_id for r in own_client.list_tasks("CANCELLED").tasks] == [tid]


KEY = b"l" * 40


@pytest.fixture(scope="module")
def secured(server_settings: ServerSettings) -> Iterator[PlatformThread]:
    with PlatformThread(replace(server_settings, auth_key=KEY.decode())) as p:
        yield p


def _as(platform: PlatformThread, namespace: str) -> Client:
    token = mint(KEY, namespace=namespace, role="producer")
    return Client(settings=ClientSettings(address=platform.address, token=token))


def test_a_caller_lists_its_own_namespace_only(secured: PlatformThread) -> None:
    queue = f"ns-{uuid.uuid4().hex[:8]}"
    with _as(secured, "alpha") as alpha, _as(secured, "beta") as beta:
        mine = []
        for i in range(3):
            h = alpha.submit("t.add", [i, i], queue=queue, countdown=3600)
            alpha.cancel(h.id)
            mine.append(h.id)
        listed = eventually(lambda: len(ids := [r.task_id for r in alpha.list_tasks(queue=queue).tasks]) == 3 and ids)
        assert listed == mine[::-1]
        assert [r.task_id for r in alpha.list_tasks("CANCELLED", queue=queue).tasks] == mine[::-1]
        assert beta.list_tasks(queue=queue).tasks == []
        assert not {r.task_id for r in beta.list_tasks(limit=1000).tasks} & set(mine)
        with pytest.raises(tasktide.InvalidArgument):
            alpha.list_tasks(queue="beta~" + queue)  # another namespace's queue cannot be named
