"""Each workflow stage starts once, and a chord's callback runs once, however often a completion is
reported: in one process and with each service in its own process (docs/guarantees.md)."""

from __future__ import annotations

import json
import threading

import grpc

from tasktide import TaskState, chain, chord, group
from tasktide.v1 import task_pb2, workflow_pb2, workflow_pb2_grpc
from tasktide_services.testing import client_settings, run_worker_thread
from tests.guarantee_tasks import add, app, total
from tests.processes import platforms

platform = platforms("one", "split")


def _workflows(platform) -> tuple[grpc.Channel, workflow_pb2_grpc.WorkflowsStub]:
    ch = grpc.insecure_channel(client_settings(platform.address).scheduler())
    return ch, workflow_pb2_grpc.WorkflowsStub(ch)


def _report_twice_at_once(platform, client, task_id: str, value: object) -> None:
    """What the registry sends when a task of a workflow succeeds, sent twice at the same time
    (two registry replicas, or a registry that crashed after reporting and reports again)."""
    task = client.get_task(task_id)
    completion = workflow_pb2.Completion(
        task_id=task_id,
        headers=task.spec.headers,
        state=task_pb2.TASK_STATE_SUCCEEDED,
        result=task_pb2.Payload(json=json.dumps(value).encode()),
    )
    ch, stub = _workflows(platform)
    with ch:
        errors: list[BaseException] = []
        go = threading.Barrier(2)

        def report() -> None:
            try:
                go.wait(5)
                stub.Completed(workflow_pb2.CompletedRequest(completions=[completion]), timeout=10)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=report) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        if errors:
            raise errors[0]


def _stage(platform, workflow_id: str) -> int:
    ch, stub = _workflows(platform)
    with ch:
        return stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=workflow_id), timeout=10).stage


def _runs(client, task_id: str) -> int:
    return [TaskState.from_proto(e.state) for e in client.watch([task_id]) if not e.progress_only].count(
        TaskState.RUNNING
    )


def test_a_step_reported_twice_moves_the_chain_once(platform, client, queue_name):
    q = {"queue": queue_name}
    wf = chain(add.s(1, 1).set(**q), add.s(10).set(**q), add.s(100).set(**q)).apply_async(client)
    first, second, third = (ids[0] for ids in wf.task_ids)
    # Before any worker runs, the registry's reports of the first two steps, each twice at once.
    _report_twice_at_once(platform, client, first, 2)
    assert _stage(platform, wf.id) == 1
    assert client.get_task(second).state == task_pb2.TASK_STATE_QUEUED
    _report_twice_at_once(platform, client, second, 12)
    assert _stage(platform, wf.id) == 2
    assert client.get_task(third).state == task_pb2.TASK_STATE_QUEUED
    _report_twice_at_once(platform, client, first, 2)  # a late repeat of an earlier step
    assert _stage(platform, wf.id) == 2, "the pointer moves forward once per stage, never back"
    # The steps then run for real and are reported again; the chain goes on once.
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=3):
        assert wf.get(timeout=20) == 112
    assert wf.state() == "SUCCEEDED"
    assert _stage(platform, wf.id) == 3
    assert [_runs(client, t) for t in (first, second, third)] == [1, 1, 1]


def test_members_reported_twice_call_the_chord_callback_once(platform, client, queue_name):
    members = group(add.s(i, 0).set(queue=queue_name) for i in range(3))
    wf = chord(members, total.s().set(queue=queue_name)).apply_async(client)
    *member_ids, body = (t for ids in wf.task_ids for t in ids)
    for i, member in enumerate(member_ids):
        _report_twice_at_once(platform, client, member, i)
        assert _stage(platform, wf.id) == (1 if i == len(member_ids) - 1 else 0)
    assert client.get_task(body).state == task_pb2.TASK_STATE_QUEUED  # submitted by the last member
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=3):
        assert wf.get(timeout=20) == 0 + 1 + 2
    assert _runs(client, body) == 1
    assert [TaskState.from_proto(e.state) for e in client.watch([body])].count(TaskState.QUEUED) == 1
