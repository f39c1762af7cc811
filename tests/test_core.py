"""Submit, dispatch, execute and results over real gRPC and Redis."""

from __future__ import annotations

import threading
import uuid

import pytest

import tasktide
from tasktide import TaskState
from tasktide_services.results.reading import WATCH_RESYNC
from tasktide_services.testing import client_settings, run_worker_thread
from tests.tasks_app import app


def test_delay_and_get(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit("t.add", [1, 2], queue=queue_name)
        assert h.get(timeout=10) == 3
        assert isinstance(h.get(timeout=10), int)
        assert h.status() is TaskState.SUCCEEDED


def test_app_delay_uses_app_settings(platform, queue_name):
    local = tasktide.App("t", settings=client_settings(platform.address))
    add = local.task(name="t.add")(lambda x, y: x + y)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert add.apply_async((20, 22), queue=queue_name).get(timeout=10) == 42
    local.close()


def test_async_task(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,), pool="asyncio"):
        assert client.submit("t.async_add", [2, 5], queue=queue_name).get(timeout=10) == 7


def test_remote_error_carries_type_message_traceback(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit("t.boom", ["kaput"], queue=queue_name)
        with pytest.raises(tasktide.TaskFailed) as info:
            h.get(timeout=10)
    err = info.value
    assert err.remote_type == "ValueError"
    assert err.remote_message == "kaput"
    assert "raise ValueError(message)" in err.remote_traceback
    assert h.status() is TaskState.FAILED


def test_unknown_task_name_waits_then_fails_on_worker(platform, client, queue_name):
    h = client.submit("t.nobody_has_this", [], queue=queue_name)
    assert h.status() is TaskState.QUEUED
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        with pytest.raises(tasktide.TaskFailed) as info:
            h.get(timeout=10)
    assert info.value.remote_type == "tasktide.UnknownTask"


def test_watch_streams_events_for_many_tasks(platform, client, queue_name):
    handles = [client.submit("t.add", [i, i], queue=queue_name) for i in range(20)]
    ids = [h.id for h in handles]
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        finals = {}
        for ev in client.watch(ids):
            state = TaskState.from_proto(ev.state)
            if state.is_final:
                finals[ev.task_id] = state
    assert set(finals) == set(ids)
    assert set(finals.values()) == {TaskState.SUCCEEDED}


def test_late_watcher_misses_nothing_and_resumes_from_cursor(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit("t.add", [1, 1], queue=queue_name)
        h.get(timeout=10)
    events = list(client.watch([h.id]))
    states = [TaskState.from_proto(e.state) for e in events]
    assert states == [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
    resumed = list(client.watch([h.id], cursors={h.id: events[0].cursor}))
    assert [e.cursor for e in resumed] == [e.cursor for e in events[1:]]


def test_batch_submit_and_wait_many(platform, client, queue_name):
    specs = [app.tasks["t.add"].spec([i, 1], queue=queue_name) for i in range(300)]
    handles = client.submit_many(specs)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=8):
        values = [h.get(timeout=30) for h in handles]
    assert values == [i + 1 for i in range(300)]


def test_idempotency_key_returns_existing_task(platform, client, queue_name):
    a = client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=f"k-{queue_name}")
    b = client.submit("t.add", [1, 2], queue=queue_name, idempotency_key=f"k-{queue_name}")
    assert a.id == b.id


def test_countdown_waits_on_server(platform, client, queue_name):
    import time

    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        t0 = time.time()
        h = client.submit("t.add", [1, 2], queue=queue_name, countdown=0.5)
        assert h.get(timeout=10) == 3
        assert time.time() - t0 >= 0.5
    history = [TaskState.from_proto(e.state) for e in client.watch([h.id]) if not e.progress_only]
    assert history == [TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]


def test_retry_then_success(platform, client, queue_name, tmp_path):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit("t.fails_once", [str(tmp_path / "m")], queue=queue_name, max_retries=2)
        assert h.get(timeout=10) == "second attempt ok"
    states = [TaskState.from_proto(e.state) for e in client.watch([h.id])]
    assert TaskState.RETRYING in states
    assert states[-1] is TaskState.SUCCEEDED


def test_watch_final_only_sends_one_event_per_task(platform, client, queue_name):
    handles = [client.submit("t.add", [i, 1], queue=queue_name) for i in range(30)]
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        events = list(client.watch([h.id for h in handles], final_only=True))
    assert sorted(e.task_id for e in events) == sorted(h.id for h in handles)
    assert {TaskState.from_proto(e.state) for e in events} == {TaskState.SUCCEEDED}


def test_a_watch_of_a_task_with_more_events_than_one_read_ends_once_it_has_them_all(platform, client):
    """A read gives at most WATCH_EVENTS_PER_READ events of a task: the rest is read at once, not
    when a notice or the resync (WATCH_RESYNC, 30 s) comes, since a finished task sends no notice."""
    import grpc

    from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2

    tid, steps = uuid.uuid4().hex, 1200  # the log keeps its last EVENTS_KEPT (1,000): two reads and more
    spec = task_pb2.TaskSpec(name="t.chatty", queue="default")
    events = [task_pb2.TaskEvent(task_id=tid, state=task_pb2.TASK_STATE_QUEUED, at_ms=1, spec=spec)]
    events.append(task_pb2.TaskEvent(task_id=tid, state=task_pb2.TASK_STATE_RUNNING, at_ms=2))
    events += [
        task_pb2.TaskEvent(
            task_id=tid,
            state=task_pb2.TASK_STATE_RUNNING,
            at_ms=3,
            progress_only=True,
            progress=i / steps,
            message=f"step {i}",
        )
        for i in range(1, steps + 1)
    ]
    events.append(task_pb2.TaskEvent(task_id=tid, state=task_pb2.TASK_STATE_SUCCEEDED, at_ms=4))
    with grpc.insecure_channel(client_settings(platform.address).results()) as ch:
        stub = results_pb2_grpc.ResultsStub(ch)
        for i in range(0, len(events), 100):
            stub.Record(results_pb2.RecordRequest(events=events[i : i + 100]), timeout=30)
    got: list = []
    watching = threading.Thread(target=lambda: got.extend(client.watch([tid])), daemon=True)
    watching.start()
    watching.join(WATCH_RESYNC / 2)
    assert not watching.is_alive(), f"the watch still waits after {len(got)} events"
    assert len(got) >= 1000 and got[-1].state == task_pb2.TASK_STATE_SUCCEEDED and not got[-1].progress_only
    assert [e.message for e in got if e.progress_only][-1] == f"step {steps}"
    cursors = [int(e.cursor) for e in got]
    assert cursors == list(range(cursors[0], cursors[0] + len(got))), "an event missed, seen twice or out of order"


def test_get_task_knows_a_task_before_and_after_it_runs(platform, client, queue_name):
    h = client.submit("t.add", [4, 5], queue=queue_name, priority=7)
    before = client.get_task(h.id)
    assert before.state == TaskState.QUEUED.value and before.spec.name == "t.add" and before.spec.priority == 7
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=10) == 9
    after = client.get_task(h.id)
    assert after.state == TaskState.SUCCEEDED.value
    assert after.spec.args.json == before.spec.args.json and after.created_ms == before.created_ms
    first = next(iter(client.watch([h.id])))
    assert TaskState.from_proto(first.state) is TaskState.QUEUED and first.at_ms == before.created_ms


def test_watch_batches_carries_the_events_of_watch_several_per_message(platform, client, queue_name):
    import grpc

    from tasktide.v1 import results_pb2, results_pb2_grpc

    big = "x" * 700_000  # two of these exceed a message's share (about 1 MB): they go apart
    handles = [client.submit("t.add", [i, 1], queue=queue_name) for i in range(30)]
    handles += [client.submit("t.echo", [big], queue=queue_name) for _ in range(2)]
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert [h.get(timeout=20) for h in handles[:30]] == [i + 1 for i in range(30)]
        assert all(h.get(timeout=20) == big for h in handles[30:])
    req = results_pb2.WatchRequest(task_ids=[h.id for h in handles], until_final=True)
    with grpc.insecure_channel(platform.results_address) as ch:
        stub = results_pb2_grpc.ResultsStub(ch)
        one_by_one = list(stub.Watch(req))
        messages = list(stub.WatchBatches(req))
    flattened = [e for m in messages for e in m.events]
    key = lambda e: (e.task_id, int(e.cursor))  # noqa: E731
    assert sorted(flattened, key=key) == sorted(one_by_one, key=key)
    assert len(one_by_one) == 32 * 3  # QUEUED, RUNNING, SUCCEEDED
    assert len(messages) < len(one_by_one) / 10
    assert all(m.ByteSize() < 2_000_000 for m in messages)
    assert sum(1 for m in messages if any(len(e.result.json) > 600_000 for e in m.events)) == 2


def test_get_with_no_time_to_wait_asks_once(platform, client, queue_name):
    """timeout=0 answers from what is recorded: a finished task's value, else TaskTimeout at once."""
    import asyncio

    waiting = client.submit("t.add", [1, 1], queue=queue_name)  # no worker yet: not finished
    with pytest.raises(tasktide.TaskTimeout):
        waiting.get(timeout=0)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert waiting.get(timeout=10) == 2
    assert waiting.get(timeout=0) == 2

    async def from_async() -> object:
        async with tasktide.AsyncClient(settings=client_settings(platform.address)) as c:
            return await c.result(waiting.id, timeout=0)

    assert asyncio.run(from_async()) == 2
