"""Chains, groups and chords run by the platform."""

from __future__ import annotations

import pytest

import tasktide
from tasktide import TaskState, chain, chord, group
from tasktide_services.testing import run_worker_thread
from tests.tasks_app import add, app, boom, total


def test_chain_passes_each_result_on(platform, client, queue_name):
    q = {"queue": queue_name}
    wf = chain(add.s(1, 2).set(**q), add.s(10).set(**q), add.s(100).set(**q)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert wf.get(timeout=15) == 113
        assert wf.state() == "SUCCEEDED"
    assert [len(ids) for ids in wf.task_ids] == [1, 1, 1]


def test_group_returns_results_in_order(platform, client, queue_name):
    wf = group(add.s(i, i).set(queue=queue_name) for i in range(6)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=4):
        assert wf.get(timeout=15) == [0, 2, 4, 6, 8, 10]


def test_chord_calls_its_body_with_the_list(platform, client, queue_name):
    header = group(add.s(i, 1).set(queue=queue_name) for i in range(4))
    wf = chord(header, total.s().set(queue=queue_name)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=4):
        assert wf.get(timeout=15) == 1 + 2 + 3 + 4


def test_chain_through_a_group(platform, client, queue_name):
    q = {"queue": queue_name}
    wf = chain(add.s(1, 1).set(**q), group(add.s(10).set(**q), add.s(20).set(**q)), total.s().set(**q))
    handle = wf.apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=2):
        assert handle.get(timeout=15) == (2 + 10) + (2 + 20)


def test_failure_stops_the_workflow_and_later_tasks_never_run(platform, client, queue_name):
    q = {"queue": queue_name}
    wf = chain(add.s(1, 1).set(**q), boom.s().set(**q), add.s(5).set(**q)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        with pytest.raises(tasktide.TaskFailed) as info:
            wf.get(timeout=15)
        assert wf.state() == "FAILED"
    assert info.value.remote_type == "ValueError" and info.value.remote_message == "2"
    last = wf.task_ids[-1][0]
    assert [TaskState.from_proto(e.state) for e in client.watch([last])] == [TaskState.FAILED]


def test_each_stage_is_submitted_once(platform, client, queue_name):
    q = {"queue": queue_name}
    wf = chord(group(add.s(i, 0).set(**q) for i in range(8)), total.s().set(**q)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=4):
        with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=4):
            assert wf.get(timeout=15) == sum(range(8))
    body = wf.task_ids[-1][0]
    states = [TaskState.from_proto(e.state) for e in client.watch([body])]
    assert states.count(TaskState.RUNNING) == 1


def test_empty_workflow_is_refused(client):
    with pytest.raises(tasktide.ConfigurationError):
        group().apply_async(client)


def test_chord_callback_carries_the_members_trace_contexts(platform, client, queue_name):
    parents = [f"00-{i:032x}-{i:016x}-01" for i in range(1, 4)]
    members = [add.s(i, 0).set(queue=queue_name, headers={"traceparent": tp}) for i, tp in enumerate(parents)]
    wf = chord(group(members), total.s().set(queue=queue_name)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=3):
        assert wf.get(timeout=15) == 0 + 1 + 2
    body = client.get_task(wf.task_ids[-1][0])
    assert body.spec.headers["tasktide-links"].split(",") == parents


def test_cancelling_a_step_stops_the_workflow(platform, client, queue_name):
    q = {"queue": queue_name}
    wf = chain(add.s(1, 1).set(**q), add.s(2).set(**q)).apply_async(client)
    first = wf.task_ids[0][0]
    assert client.cancel(first) is TaskState.CANCELLED  # no worker yet: still queued
    with pytest.raises(tasktide.TaskCancelled):
        client.result(first, timeout=5)
    with pytest.raises(tasktide.TaskFailed):
        wf.get(timeout=5)
    assert wf.state() == "FAILED"
