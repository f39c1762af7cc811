"""Workflows at scale: a group of 10,000 completes with its results in order, and what Redis sends
per member does not grow with the size of the group (no figure depends on the machine's load);
the limit on a workflow's size, and completions that are malformed or of a workflow that is gone (left out)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import grpc
import pytest
import redis

from tasktide import chord, group
from tasktide.v1 import task_pb2, worker_pb2, worker_pb2_grpc, workflow_pb2, workflow_pb2_grpc
from tasktide_services.testing import PlatformThread, client_settings, run_worker_thread
from tests.tasks_app import add, app, total


def _output_bytes(url: str) -> int:
    with redis.Redis.from_url(url) as r:
        return int(r.info("stats")["total_net_output_bytes"])


def test_a_group_of_ten_thousand_completes_with_its_results_in_order(platform, client, queue_name):
    n = 10_000
    wf = group(add.s(i, 1).set(queue=queue_name) for i in range(n)).apply_async(client)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=8):
        assert wf.get(timeout=900) == [i + 1 for i in range(n)]
    assert wf.state() == "SUCCEEDED"
    assert len(wf.task_ids[0]) == n


def test_redis_sends_as_much_per_member_for_a_large_chord_as_for_a_small_one(
    platform, client, queue_name, redis_server
):
    """Each member's completion used to read the whole workflow (every spec and every result so
    far): bytes per member grew with the chord's size, and the time of a chord with its square."""
    per_member = {}
    for n in (100, 1_500):
        before = _output_bytes(redis_server.url)
        wf = chord(group(add.s(i, 0).set(queue=queue_name) for i in range(n)), total.s().set(queue=queue_name))
        handle = wf.apply_async(client)
        with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=8):
            assert handle.get(timeout=600) == n * (n - 1) // 2
        per_member[n] = (_output_bytes(redis_server.url) - before) / n
    assert per_member[1_500] < 2 * per_member[100], per_member


def _stub(address: str) -> tuple[grpc.Channel, workflow_pb2_grpc.WorkflowsStub]:
    ch = grpc.insecure_channel(client_settings(address).scheduler())
    return ch, workflow_pb2_grpc.WorkflowsStub(ch)


def _group_request(n: int, queue: str) -> workflow_pb2.SubmitWorkflowRequest:
    req = workflow_pb2.SubmitWorkflowRequest()
    spec = task_pb2.TaskSpec(name="t.add", queue=queue, args=task_pb2.Payload(json=b"[1,1]"))
    req.stages.add(group=True).tasks.extend([spec] * n)
    return req


def test_a_workflow_over_the_limit_is_refused_and_one_at_the_limit_accepted(server_settings, queue_name):
    small = replace(server_settings, limits=replace(server_settings.limits, max_workflow_tasks=5, max_batch=2))
    p = PlatformThread(small).start()
    try:
        ch, stub = _stub(p.address)
        with ch:
            with pytest.raises(grpc.RpcError) as info:
                stub.SubmitWorkflow(_group_request(6, queue_name), timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "workflow of 6 tasks; the limit is 5" in (info.value.details() or "")
            resp = stub.SubmitWorkflow(_group_request(5, queue_name), timeout=10)  # in batches of 2
            assert [len(st.task_ids) for st in resp.stages] == [5]
            assert not resp.stages[0].tasks, "the answer carries the ids, not the specs sent"
            with grpc.insecure_channel(p.address) as sch:
                stats = worker_pb2_grpc.RegistryStub(sch).QueueStats(worker_pb2.QueueStatsRequest(), timeout=10)
            assert {q.queue: q.ready for q in stats.queues}.get(queue_name) == 5
    finally:
        p.stop()


@pytest.mark.parametrize(
    ("headers", "result"),
    [
        ({"tasktide-stage": "x", "tasktide-member": "0"}, b"1"),
        ({"tasktide-stage": "0", "tasktide-member": "-1"}, b"1"),
        ({"tasktide-stage": "0"}, b"1"),
        ({"tasktide-stage": "0", "tasktide-member": "0"}, b"{not json"),
        ({"tasktide-workflow": "not-an-id", "tasktide-stage": "0", "tasktide-member": "0"}, b"1"),
    ],
)
def test_a_malformed_completion_is_left_out_and_the_rest_goes_on(platform, client, queue_name, headers, result):
    """Headers a submitter may have written: the report is logged and left out (reporting it again
    could not help), the other reports of the batch are taken, and the workflow goes on."""
    wf = group(add.s(i, 1).set(queue=queue_name) for i in range(2)).apply_async(client)
    bad = workflow_pb2.Completion(
        task_id=wf.task_ids[0][0],
        headers={"tasktide-workflow": wf.id, **headers},
        state=task_pb2.TASK_STATE_SUCCEEDED,
        result=task_pb2.Payload(json=result),
    )
    other = group(add.s(5, 5).set(queue=queue_name)).apply_async(client)
    good = workflow_pb2.Completion(
        task_id=other.task_ids[0][0],
        headers=client.get_task(other.task_ids[0][0]).spec.headers,
        state=task_pb2.TASK_STATE_SUCCEEDED,
        result=task_pb2.Payload(json=b"10"),
    )
    ch, stub = _stub(platform.address)
    with ch:
        stub.Completed(workflow_pb2.CompletedRequest(completions=[bad, good]), timeout=10)
    assert other.state() == "SUCCEEDED"
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=2):
        assert wf.get(timeout=60) == [1, 2]


def test_a_completion_of_a_workflow_that_is_gone_is_ignored(platform, queue_name):
    gone = workflow_pb2.Completion(
        task_id="a" * 32,
        headers={"tasktide-workflow": "b" * 32, "tasktide-stage": "0", "tasktide-member": "0"},
        state=task_pb2.TASK_STATE_SUCCEEDED,
        result=task_pb2.Payload(json=b"1"),
    )
    ch, stub = _stub(platform.address)
    with ch:
        stub.Completed(workflow_pb2.CompletedRequest(completions=[gone]), timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id="b" * 32), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_workflow_stored_in_the_former_layout_still_moves_on(platform, client, redis_server, queue_name):
    """A workflow written before the stage-by-stage layout (every stage in one `spec` field) and
    still running when the scheduler is upgraded: its members' reports still call its body."""
    from tasktide_services.scheduler import keys

    wf = workflow_pb2.SubmitWorkflowResponse(workflow_id=uuid.uuid4().hex)
    for n, (group_, count) in enumerate(((True, 2), (False, 1))):
        stage = wf.stages.add(group=group_)
        for i in range(count):
            spec = task_pb2.TaskSpec(name="t.total", queue=queue_name, args=task_pb2.Payload(json=b"[]"))
            spec.headers.update(
                {"tasktide-workflow": wf.workflow_id, "tasktide-stage": str(n), "tasktide-member": str(i)}
            )
            spec.idempotency_key = f"wf:{wf.workflow_id}:{n}:{i}"
            stage.tasks.append(spec)
            stage.task_ids.append(uuid.uuid4().hex)
    key = keys.workflow(wf.workflow_id)
    with redis.Redis.from_url(redis_server.url) as r:
        r.hset(key, mapping={"spec": wf.SerializeToString(), "stage": 0, "state": "running", "left:0": 2})
    reports = [
        workflow_pb2.Completion(
            task_id=wf.stages[0].task_ids[i],
            headers=wf.stages[0].tasks[i].headers,
            state=task_pb2.TASK_STATE_SUCCEEDED,
            result=task_pb2.Payload(json=str(10 + i).encode()),
        )
        for i in range(2)
    ]
    ch, stub = _stub(platform.address)
    with ch:
        stub.Completed(workflow_pb2.CompletedRequest(completions=reports), timeout=10)
        state = stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=wf.workflow_id), timeout=10)
    assert state.stage == 1 and [len(st.task_ids) for st in state.stages] == [2, 1]
    body = client.get_task(wf.stages[1].task_ids[0])
    assert json.loads(body.spec.args.json) == [[10, 11]]
