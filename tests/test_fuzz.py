"""Fuzzing every RPC of the four services with requests derived from their protobuf descriptors
(tests/fuzz_strategies.py), against a live platform on a Redis of its own (so the internal RPCs,
Record, Enqueue, Retry and Completed, may write anything without touching other tests' tasks).

Every answer must be a clean gRPC status (OK or any status but INTERNAL and UNKNOWN), nothing may
be logged as a failure of an RPC (a call cut short by its deadline could hide one), the server
must stay SERVING, and another client's ordinary submit and get must still work afterwards.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasktide import Client
from tasktide.v1 import results_pb2, scheduler_pb2, worker_pb2, workflow_pb2
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import PlatformThread, client_settings, run_worker_thread
from tests.fuzz_strategies import message, task_specs
from tests.processes import own_redis
from tests.tasks_app import app

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))  # per service; more for a longer search
SERVICES = {
    "Scheduler": scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    "Registry": worker_pb2.DESCRIPTOR.services_by_name["Registry"],
    "Results": results_pb2.DESCRIPTOR.services_by_name["Results"],
    "Workflows": workflow_pb2.DESCRIPTOR.services_by_name["Workflows"],
}
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TRIED: Counter[str] = Counter()


class _Failures(logging.Handler):
    """Records what the RPC layer logs as a failed call (an exception mapped to INTERNAL)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformThread]:
    """The platform for this module only, on a Redis of its own."""
    with own_redis(Path(tmp_path_factory.mktemp("fuzz-redis"))) as url:
        base = ServerSettings()
        p = PlatformThread(replace(base, address="127.0.0.1:0", redis_url=url, lease_seconds=3.0, tick_seconds=0.05))
        p.start()
        try:
            yield p
        finally:
            p.stop()


@pytest.fixture(scope="module")
def failures() -> Iterator[_Failures]:
    handler = _Failures()
    logger = logging.getLogger("tasktide.rpc")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _calls(service: ServiceDescriptor) -> st.SearchStrategy[tuple[MethodDescriptor, list[Message]]]:
    """A method of the service and the request(s) to send it: 1 to 3 for a client stream."""
    options = []
    for m in service.methods:
        one = message(m.input_type)
        requests = st.lists(one, min_size=1, max_size=3) if m.client_streaming else one.map(lambda r: [r])
        options.append(st.tuples(st.just(m), requests))
    return st.one_of(options)


def _bytes(msg: Message) -> bytes:
    return bytes(msg.SerializeToString())


def _send(channel: grpc.Channel, service: ServiceDescriptor, m: MethodDescriptor, requests: list[Message]) -> None:
    """Send the request(s); raise AssertionError on an INTERNAL or UNKNOWN answer."""
    path = f"/{service.full_name}/{m.name}"
    out = GetMessageClass(m.output_type).FromString
    # Calls that may wait on the server (a stream, Wait) are cut short: their input is checked first.
    waits = m.server_streaming or m.name == "Wait"
    timeout = 0.3 if waits else 5.0
    try:
        if m.client_streaming:
            for _ in channel.stream_stream(path, _bytes, out)(iter(requests), timeout=timeout):
                pass
        elif m.server_streaming:
            for _ in channel.unary_stream(path, _bytes, out)(requests[0], timeout=timeout):
                pass
        else:
            channel.unary_unary(path, _bytes, out)(requests[0], timeout=timeout)
    except grpc.RpcError as exc:
        if exc.code() in BROKEN:
            raise AssertionError(f"{m.name} answered {exc.code()}: {exc.details()}\nrequest(s): {requests}") from None


def _still_serving(platform: PlatformThread, queue: str) -> None:
    with grpc.insecure_channel(platform.address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with (
        Client(settings=client_settings(platform.address)) as other,
        run_worker_thread(app, platform.address, queues=(queue,)),
    ):
        assert other.submit("t.add", [2, 3], queue=queue).get(timeout=30) == 5


@pytest.mark.parametrize("name", list(SERVICES))
def test_fuzz_service(platform: PlatformThread, failures: _Failures, name: str, queue_name: str) -> None:
    service = SERVICES[name]
    channel = grpc.insecure_channel(platform.address)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(_calls(service))
    def fuzz(call: tuple[MethodDescriptor, list[Message]]) -> None:
        TRIED[name] += 1
        _send(channel, service, *call)

    try:
        fuzz()
    finally:
        channel.close()
    print(f"\n{name}: {TRIED[name]} inputs tried ({sum(TRIED.values())} so far in this module)")
    assert not failures.records, "\n".join(r.getMessage() + "\n" + str(r.exc_text) for r in failures.records[:3])
    _still_serving(platform, queue_name)


def test_fuzz_task_spec(platform: PlatformThread, failures: _Failures, queue_name: str) -> None:
    """TaskSpecs valid but for one or two fields, alone (Submit) and among good ones (SubmitBatch)."""
    service = SERVICES["Scheduler"]
    submit, batch = service.methods_by_name["Submit"], service.methods_by_name["SubmitBatch"]
    good = scheduler_pb2.SubmitRequest(spec={"name": "t.add", "queue": "fuzz", "args": {"json": b"[1, 1]"}}).spec
    channel = grpc.insecure_channel(platform.address)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(task_specs())
    def fuzz(spec: Message) -> None:
        TRIED["TaskSpec"] += 1
        _send(channel, service, submit, [scheduler_pb2.SubmitRequest(spec=spec)])
        _send(channel, service, batch, [scheduler_pb2.SubmitBatchRequest(specs=[good, spec, good])])

    try:
        fuzz()
    finally:
        channel.close()
    print(
        f"\nTaskSpec: {TRIED['TaskSpec']} specs tried, each alone and in a batch ({sum(TRIED.values())} in this module)"
    )
    assert not failures.records, "\n".join(r.getMessage() + "\n" + str(r.exc_text) for r in failures.records[:3])
    _still_serving(platform, queue_name)
