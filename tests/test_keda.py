"""KEDA's external scaler served by the registry (services/worker/keda.py), called over gRPC with
KEDA's own contract (proto/keda/externalscaler.proto) the way KEDA calls it, against the platform."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktide import Client, ServiceError
from tasktide_services.common.redis_server import start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.externalscaler import externalscaler_pb2 as pb
from tasktide_services.testing import PlatformThread, client_settings, eventually
from tasktide_services.worker import keda

SERVICE = "/externalscaler.ExternalScaler/"


class Scaler:
    """KEDA's side of the contract: the four calls, on one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        ser = pb.ScaledObjectRef.SerializeToString
        self._is_active = channel.unary_unary(
            SERVICE + "IsActive", request_serializer=ser, response_deserializer=pb.IsActiveResponse.FromString
        )
        self._stream = channel.unary_stream(
            SERVICE + "StreamIsActive", request_serializer=ser, response_deserializer=pb.IsActiveResponse.FromString
        )
        self._spec = channel.unary_unary(
            SERVICE + "GetMetricSpec", request_serializer=ser, response_deserializer=pb.GetMetricSpecResponse.FromString
        )
        self._metrics = channel.unary_unary(
            SERVICE + "GetMetrics",
            request_serializer=pb.GetMetricsRequest.SerializeToString,
            response_deserializer=pb.GetMetricsResponse.FromString,
        )

    def is_active(self, ref: pb.ScaledObjectRef) -> bool:
        return bool(self._is_active(ref, timeout=10).result)

    def stream(self, ref: pb.ScaledObjectRef) -> grpc.Future:
        return self._stream(ref)

    def spec(self, ref: pb.ScaledObjectRef) -> pb.GetMetricSpecResponse:
        return self._spec(ref, timeout=10)

    def depth(self, ref: pb.ScaledObjectRef, metric: str = "") -> pb.MetricValue:
        resp = self._metrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric), timeout=10)
        assert len(resp.metricValues) == 1
        return resp.metricValues[0]


def ref(**metadata: str) -> pb.ScaledObjectRef:
    meta = {"scalerAddress": "tasktide-registry.default.svc:50051", **metadata}
    return pb.ScaledObjectRef(name="tasktide-worker", namespace="default", scalerMetadata=meta)


@pytest.fixture()
def scaler(platform: PlatformThread) -> Iterator[Scaler]:
    # the scaler is served by the registry (its own address when the services run apart)
    with grpc.insecure_channel(platform.registry_address) as channel:
        yield Scaler(channel)


def submit(client: Client, queue: str, n: int) -> None:
    for i in range(n):
        client.submit("t.add", [i, 1], queue=queue)  # no worker consumes `queue`: the tasks wait


def test_get_metrics_answers_the_queue_depth_and_is_active_follows_it(
    scaler: Scaler, client: Client, queue_name: str
) -> None:
    r = ref(queue=queue_name)
    assert scaler.is_active(r) is False
    empty = scaler.depth(r, "s0-tasktide-x")
    assert (empty.metricValueFloat, empty.metricValue, empty.metricName) == (0.0, 0, "s0-tasktide-x")

    submit(client, queue_name, 3)
    value = eventually(lambda: (v := scaler.depth(r)).metricValue == 3 and v, what="depth 3")
    assert value.metricValueFloat == 3.0
    assert scaler.is_active(r) is True


def test_queues_are_summed_and_a_paused_queue_counts_nothing_ready(
    scaler: Scaler, client: Client, queue_name: str
) -> None:
    other = queue_name + "-b"
    submit(client, queue_name, 2)
    submit(client, other, 3)
    both = ref(queue=f"{queue_name}, {other}")
    eventually(lambda: scaler.depth(both).metricValue == 5, what="depth 5 over two queues")

    client.pause_queue(other)
    try:
        assert scaler.depth(both).metricValue == 2
        assert scaler.is_active(ref(queue=other)) is False  # its tasks wait, but workers would not get them
    finally:
        client.resume_queue(other)
    assert scaler.depth(both).metricValue == 5


def test_depth_returns_to_zero_once_workers_ran_the_tasks(scaler: Scaler, client: Client, python_worker: str) -> None:
    r = ref(queue=python_worker)
    handles = [client.submit("t.add", [i, 1], queue=python_worker) for i in range(4)]
    assert [h.get(timeout=30) for h in handles] == [1, 2, 3, 4]
    eventually(lambda: scaler.depth(r).metricValue == 0, what="depth back to 0")
    assert scaler.is_active(r) is False


def test_get_metric_spec_answers_the_target_per_replica(scaler: Scaler, queue_name: str) -> None:
    (spec,) = scaler.spec(ref(queue=queue_name, targetPerReplica="25")).metricSpecs
    assert spec.targetSizeFloat == 25.0
    assert spec.targetSize == 25
    assert spec.metricName == f"tasktide-{queue_name}"
    (default,) = scaler.spec(ref(queue="Orders.EU:high")).metricSpecs
    assert default.targetSizeFloat == 10.0
    assert default.metricName == "tasktide-orders-eu-high"  # fit for Kubernetes' metric names


def test_stream_is_active_sends_the_state_then_each_change(scaler: Scaler, client: Client, queue_name: str) -> None:
    stream = scaler.stream(ref(queue=queue_name))
    try:
        assert next(stream).result is False  # the state at once
        submit(client, queue_name, 1)
        assert next(stream).result is True  # work arrived
        client.pause_queue(queue_name)
        assert next(stream).result is False  # nothing a worker could take
        client.resume_queue(queue_name)
        assert next(stream).result is True
    finally:
        stream.cancel()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "needs `queue`"),
        ({"queue": " , "}, "needs `queue`"),
        ({"queue": "bad name"}, "invalid queue name"),
        ({"queue": "q", "targetPerReplica": "many"}, "not a number"),
        ({"queue": "q", "targetPerReplica": "0"}, "above zero"),
        ({"queue": "q", "targetPerReplica": "nan"}, "above zero"),
    ],
)
def test_bad_metadata_gets_invalid_argument(scaler: Scaler, metadata: dict[str, str], message: str) -> None:
    calls = [
        lambda: scaler.is_active(ref(**metadata)),
        lambda: scaler.spec(ref(**metadata)),
        lambda: scaler.depth(ref(**metadata)),
        lambda: next(scaler.stream(ref(**metadata))),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (err.value.details() or "")


def test_the_scaler_reports_serving_on_the_health_service(platform: PlatformThread) -> None:
    with grpc.insecure_channel(platform.registry_address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        resp = check(health_pb2.HealthCheckRequest(service="externalscaler.ExternalScaler"), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_stream_is_active_outlives_a_redis_restart(
    server_settings: ServerSettings, queue_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing depth read is logged and read again: the stream KEDA holds stays open."""
    data = tmp_path / "redis"
    r1 = start_redis(data, appendonly=False)
    platform = PlatformThread(replace(server_settings, redis_url=r1.url)).start()
    try:
        with grpc.insecure_channel(platform.address) as channel:
            stream = Scaler(channel).stream(ref(queue=queue_name))
            assert next(stream).result is False
            r1.stop()
            eventually(lambda: "queue depth for" in caplog.text, timeout=20, what="a depth read to fail")
            r2 = start_redis(data, port=r1.port, appendonly=False)
            try:
                with Client(settings=client_settings(platform.address)) as c:

                    def submit_after() -> object:
                        try:  # the first calls may meet the restart; a caller retries a refused submit
                            return c.submit("t.add", [1, 1], queue=queue_name)
                        except ServiceError:
                            return None

                    eventually(submit_after, timeout=20, interval=0.2, what="the services to reconnect to Redis")
                    assert next(stream).result is True  # the same stream, after the failed reads
                stream.cancel()
            finally:
                r2.stop()
    finally:
        platform.stop()


def test_streams_beyond_the_bound_are_refused_until_one_closes(
    server_settings: ServerSettings, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scaler answers without a token: the streams it keeps open are bounded (keda.MAX_STREAMS)."""
    monkeypatch.setattr(keda, "MAX_STREAMS", 2)
    with PlatformThread(server_settings) as platform, grpc.insecure_channel(platform.address) as channel:
        scaler = Scaler(channel)
        held = [scaler.stream(ref(queue=queue_name)) for _ in range(2)]
        try:
            assert [next(s).result for s in held] == [False, False]
            with pytest.raises(grpc.RpcError) as err:
                next(scaler.stream(ref(queue=queue_name)))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "2 scaler streams are open" in (err.value.details() or "")
            held.pop().cancel()

            def reopened() -> bool:
                stream = scaler.stream(ref(queue=queue_name))
                try:
                    return next(stream).result is False
                except grpc.RpcError:
                    return False
                finally:
                    stream.cancel()

            eventually(reopened, timeout=10, interval=0.1, what="a stream once another closed")
        finally:
            for s in held:
                s.cancel()


@pytest.mark.parametrize(
    ("tokens", "setting", "served"),
    [(False, None, True), (True, None, False), (True, True, True), (False, False, False)],
    ids=["no-tokens", "tokens", "tokens-asked-for", "turned-off"],
)
def test_the_scaler_is_served_with_tokens_checked_only_when_asked_for(
    server_settings: ServerSettings, queue_name: str, tokens: bool, setting: bool | None, served: bool
) -> None:
    """KEDA cannot send a token: where tokens are checked, the scaler (open to any caller) is served
    only with TASKTIDE_EXTERNAL_SCALER=1."""
    settings = replace(server_settings, auth_key="k" * 40 if tokens else "", external_scaler=setting)
    with PlatformThread(settings) as platform, grpc.insecure_channel(platform.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check
        if served:
            assert Scaler(channel).is_active(ref(queue=queue_name)) is False  # no token sent
            status = health(health_pb2.HealthCheckRequest(service="externalscaler.ExternalScaler"), timeout=10)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        else:
            with pytest.raises(grpc.RpcError) as err:
                Scaler(channel).is_active(ref(queue=queue_name))
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as err:
                health(health_pb2.HealthCheckRequest(service="externalscaler.ExternalScaler"), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_setting_takes_yes_or_no() -> None:
    assert ServerSettings.from_env({"TASKTIDE_EXTERNAL_SCALER": "1"}).external_scaler is True
    assert ServerSettings.from_env({"TASKTIDE_EXTERNAL_SCALER": "false"}).external_scaler is False
    assert ServerSettings.from_env({}).external_scaler is None
    with pytest.raises(ValueError, match="TASKTIDE_EXTERNAL_SCALER must be 1 or 0"):
        ServerSettings.from_env({"TASKTIDE_EXTERNAL_SCALER": "maybe"})
