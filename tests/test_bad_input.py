"""Bad input to any RPC gets a clear status, and the service stays healthy."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tasktide
from tasktide.v1 import (
    results_pb2,
    results_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    task_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from tests.submit_stream_server import serve_submit_stream

INVALID = grpc.StatusCode.INVALID_ARGUMENT


# Where each service listens: the platform's one address, or each its own when the services run apart.
ADDRESS_OF = {
    "tasktide.v1.Scheduler": "address",
    "tasktide.v1.Registry": "registry_address",
    "tasktide.v1.Results": "results_address",
}


@pytest.fixture()
def channel(platform):
    ch = grpc.insecure_channel(platform.address)
    yield ch
    ch.close()


@pytest.fixture()
def channel_to(platform):
    """A channel to the server of a service (by its full name, "tasktide.v1.Results")."""
    opened: dict[str, grpc.Channel] = {}

    def open_(service: str) -> grpc.Channel:
        address = getattr(platform, ADDRESS_OF[service])
        if address not in opened:
            opened[address] = grpc.insecure_channel(address)
        return opened[address]

    yield open_
    for ch in opened.values():
        ch.close()


def _raw(channel, method: str, payload: bytes):
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    return call(payload, timeout=5)


def _status(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details()


def _submit(channel, **spec):
    req = scheduler_pb2.SubmitRequest(spec=task_pb2.TaskSpec(**spec))
    return _raw(channel, "/tasktide.v1.Scheduler/Submit", req.SerializeToString())


@pytest.mark.parametrize(
    ("spec", "code", "fragment"),
    [
        ({"name": ""}, INVALID, "task name is empty"),
        ({"name": "x" * 201}, INVALID, "limit is 200"),
        ({"name": "1bad name"}, INVALID, "invalid task name"),
        ({"name": "t.add", "priority": 101}, INVALID, "out of range"),
        ({"name": "t.add", "priority": -101}, INVALID, "out of range"),
        ({"name": "t.add", "queue": "no spaces allowed"}, INVALID, "invalid queue name"),
        ({"name": "t.add", "args": task_pb2.Payload(json=b"{not json")}, INVALID, "not valid JSON"),
        ({"name": "t.add", "args": task_pb2.Payload(json=b"{}")}, INVALID, "JSON array"),
        ({"name": "t.add", "countdown": -1}, INVALID, "countdown"),
        ({"name": "t.add", "countdown": float("nan")}, INVALID, "countdown"),
        ({"name": "t.add", "countdown": 1e12}, INVALID, "countdown"),
        ({"name": "t.add", "eta_ms": -1}, INVALID, "eta"),
        ({"name": "t.add", "eta_ms": 10**17}, INVALID, "eta"),
        ({"name": "t.add", "eta_ms": int(time.time() * 1000) + 400 * 366 * 86_400_000}, INVALID, "eta is more"),
        ({"name": "t.add", "expires_ms": -1}, INVALID, "expires"),
        ({"name": "t.add", "time_limit": float("nan")}, INVALID, "time_limit"),
        ({"name": "t.add", "soft_time_limit": float("inf")}, INVALID, "soft_time_limit"),
        ({"name": "t.add", "soft_time_limit": -0.5}, INVALID, "soft_time_limit"),
        ({"name": "t.add", "retry": task_pb2.RetryPolicy(backoff_base=-1)}, INVALID, "retry backoff"),
        ({"name": "t.add", "retry": task_pb2.RetryPolicy(backoff_max=float("inf"))}, INVALID, "backoff_max"),
        (
            {"name": "t.add", "args": task_pb2.Payload(json=b"[" + b"1," * 600_000 + b"1]")},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "limit is",
        ),
    ],
)
def test_submit_rejects_bad_specs(channel, spec, code, fragment):
    got, details = _status(lambda: _submit(channel, **spec))
    assert got == code
    assert fragment in details


def test_truncated_protobuf_is_invalid_argument(channel):
    good = scheduler_pb2.SubmitRequest(spec=task_pb2.TaskSpec(name="t.add")).SerializeToString()
    got, details = _status(lambda: _raw(channel, "/tasktide.v1.Scheduler/Submit", good[:-3]))
    assert got == INVALID
    assert "malformed tasktide.v1.SubmitRequest" in details


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("/tasktide.v1.Scheduler/GetTask", scheduler_pb2.GetTaskRequest(task_id="not-an-id")),
        ("/tasktide.v1.Scheduler/Cancel", scheduler_pb2.CancelRequest(task_id="../../etc")),
        ("/tasktide.v1.Results/Get", results_pb2.GetRequest(task_ids=["zz"])),
        ("/tasktide.v1.Results/Wait", results_pb2.WaitRequest(task_id="")),
    ],
)
def test_malformed_ids_are_invalid_argument(channel_to, method, message):
    channel = channel_to(method.split("/")[1])
    got, details = _status(lambda: _raw(channel, method, message.SerializeToString()))
    assert got == INVALID
    assert "malformed task id" in details


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (task_pb2.TaskEvent(state=-1), "state"),
        (task_pb2.TaskEvent(state=task_pb2.TASK_STATE_QUEUED, at_ms=-5, spec=task_pb2.TaskSpec(name="t.add")), "at_ms"),
    ],
)
def test_record_refuses_an_event_it_could_not_read_back(channel_to, client, event, fragment):
    """Results.Record (an internal RPC) once stored a negative state or time as given, and every later
    call on that task (its next event, its result) then failed in the record script."""
    event.task_id = uuid.uuid4().hex
    channel = channel_to("tasktide.v1.Results")
    method = "/tasktide.v1.Results/Record"
    got, details = _status(lambda: _raw(channel, method, results_pb2.RecordRequest(events=[event]).SerializeToString()))
    assert got == INVALID
    assert fragment in details
    good = task_pb2.TaskEvent(task_id=event.task_id, state=task_pb2.TASK_STATE_QUEUED, at_ms=1)
    _raw(channel, method, results_pb2.RecordRequest(events=[good]).SerializeToString())
    assert client.fetch([event.task_id])[0].state == task_pb2.TASK_STATE_QUEUED


@pytest.mark.parametrize(
    ("task_ids", "forget", "code", "fragment"),
    [
        (["zz"], [], INVALID, "malformed task id"),
        ([], [""], INVALID, "malformed task id"),
        ([uuid.uuid4().hex for _ in range(10_001)], [], grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 10000"),
    ],
)
def test_follow_refuses_bad_ids_and_too_many(channel_to, task_ids, forget, code, fragment):
    """Results.Follow ends the stream with a status naming what was wrong (10,001 ids are one more
    than it follows at once)."""
    stub = results_pb2_grpc.ResultsStub(channel_to("tasktide.v1.Results"))
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Follow(iter([results_pb2.FollowRequest(task_ids=task_ids, forget=forget)]), timeout=30))
    assert info.value.code() == code
    assert fragment in info.value.details()


def _entry(seq: int) -> scheduler_pb2.SubmitStreamRequest:
    return scheduler_pb2.SubmitStreamRequest(seq=seq, spec=task_pb2.TaskSpec(name="t.add"))


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (
            scheduler_pb2.SubmitStreamRequest(batch=[_entry(1), scheduler_pb2.SubmitStreamRequest(batch=[_entry(2)])]),
            "no batch of its own",
        ),
        (
            scheduler_pb2.SubmitStreamRequest(seq=1, spec=task_pb2.TaskSpec(name="t.add"), batch=[_entry(2)]),
            "or a batch, not both",
        ),
    ],
    ids=["nested batch", "batch beside a spec"],
)
def test_a_malformed_submission_batch_ends_the_stream(channel, message, fragment):
    """A SubmitStream message is one submission or a batch of them: anything else ends the stream
    with INVALID_ARGUMENT naming what was wrong."""
    stub = scheduler_pb2_grpc.SchedulerStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.SubmitStream(iter([message]), timeout=30))
    assert info.value.code() == INVALID
    assert fragment in info.value.details()


def test_unknown_task_id_is_not_found(client):
    with pytest.raises(tasktide.NotFound):
        client.get_task("0" * 32)


def test_session_must_start_with_hello(channel_to):
    stub = worker_pb2_grpc.RegistryStub(channel_to("tasktide.v1.Registry"))
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Session(iter([worker_pb2.WorkerMessage(credit=5)]), timeout=5))
    assert info.value.code() == INVALID


def test_oversized_batch_is_resource_exhausted(channel):
    req = scheduler_pb2.SubmitBatchRequest(specs=[task_pb2.TaskSpec(name="t.add")] * 10_001)
    got, _ = _status(lambda: _raw(channel, "/tasktide.v1.Scheduler/SubmitBatch", req.SerializeToString()))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_service_stays_healthy_after_bad_input(channel, channel_to, client, platform, queue_name):
    for _ in range(20):
        with pytest.raises(grpc.RpcError):
            _raw(channel, "/tasktide.v1.Scheduler/Submit", b"\xff\xff\xff")
    for service in ADDRESS_OF:
        health = health_pb2_grpc.HealthStub(channel_to(service))
        for name in ("", service):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, (service, name)
    assert client.submit("t.add", [1, 2], queue=queue_name).id


def test_reflection_lists_the_services(channel_to):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    for service in ADDRESS_OF:  # each server lists the services it hosts
        stub = reflection_pb2_grpc.ServerReflectionStub(channel_to(service))
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        (resp,) = list(stub.ServerReflectionInfo(iter([req]), timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert {service, "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(
    "value", ["65536 bytes", "-65536", "+65536", "0x10000", "6.5e4", "", "0", "６５５３６", "²", "9" * 5000]
)
def test_a_malformed_message_size_announced_by_a_scheduler_leaves_the_clients_bound(value):
    """A SubmitStream's initial metadata read by the Python clients (both read it with one function,
    _submitter.message_bounds): a size that is not a positive decimal number is ignored, as if the
    scheduler announced none, and so is a count that is no decimal number; a huge one is capped."""
    from tasktide._submitter import BATCH_HEADER, BYTES_HEADER, MAX_BATCH_BYTES, MAX_PER_MESSAGE, message_bounds

    assert message_bounds([(BATCH_HEADER, "50")]) == (50, MAX_BATCH_BYTES)  # a scheduler from before the size
    assert message_bounds([(BATCH_HEADER, "50"), (BYTES_HEADER, value)]) == (50, MAX_BATCH_BYTES)
    count = MAX_PER_MESSAGE if value.isascii() and value.isdigit() and value.strip("0") else 1
    assert message_bounds([(BATCH_HEADER, value), (BYTES_HEADER, "65536")]) == (count, 65536)


def test_a_scheduler_announcing_a_malformed_message_size_gets_batches_under_the_default_bound(queue_name):
    """A scheduler of the test's own announces batches and a size of "65536 bytes": the client
    ignores the size (it does not read 65536 from it) and sends what is queued in messages under its
    own 1 MiB bound."""
    from tasktide._spec import build_spec
    from tasktide._submitter import BATCH_HEADER, BYTES_HEADER, MAX_BATCH_BYTES, StreamSubmitter

    received: list[scheduler_pb2.SubmitStreamRequest] = []

    def answer(requests, context):  # type: ignore[no-untyped-def]
        context.send_initial_metadata(((BATCH_HEADER, "1000"), (BYTES_HEADER, "65536 bytes")))
        for req in requests:
            received.append(req)
            ids = [(e.seq, scheduler_pb2.SubmitResponse(task_id=f"{e.seq:032x}")) for e in (req.batch or [req])]
            out = [scheduler_pb2.SubmitStreamResponse(seq=seq, result=result) for seq, result in ids]
            yield out[0] if len(out) == 1 else scheduler_pb2.SubmitStreamResponse(batch=out)

    with serve_submit_stream(answer) as address:
        channel = grpc.insecure_channel(address)
        submitter = StreamSubmitter(scheduler_pb2_grpc.SchedulerStub(channel), address, pipelined=True)
        try:
            submitter.submit(build_spec("t.add", [0, 0], {}, queue=queue_name)).result(timeout=30)  # type: ignore[union-attr]
            futs = [
                submitter.send(build_spec("t.add", ["x" * 20_000, i], {}, queue=queue_name), True) for i in range(40)
            ]
            submitter.flush(timeout=30)
        finally:
            submitter.close()
            channel.close()
    assert [f.result() for f in futs] == [f"{i + 2:032x}" for i in range(40)]
    batches = [req.ByteSize() for req in received if len(req.batch) > 1]
    assert max(batches) > 65536  # the malformed size was not read as 65536
    assert max(batches) <= MAX_BATCH_BYTES
