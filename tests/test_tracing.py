"""One trace per task across every process: client, scheduler, registry, worker and results, each
exporting over OTLP to a receiver in the test."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tasktide import Client, ClientSettings
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide_services.testing import spawn
from tests.otlp_receiver import OtlpReceiver, Span
from tests.processes import ROOT, own_redis, separate_services, stop

INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
ERROR = 2
SERVICES = {"tasktide-test-client", "tasktide-scheduler", "tasktide-registry", "tasktide-results", "tasktide-worker"}


@pytest.fixture()
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "TASKTIDE_TICK_SECONDS": "0.05",
    }


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_one_trace_across_all_processes_with_both_attempts(receiver, tmp_path, pool):
    queue = f"q-{uuid.uuid4().hex[:10]}"
    provider = TracerProvider(resource=Resource.create({"service.name": "tasktide-test-client"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
    with (
        own_redis(tmp_path / "redis") as redis_url,
        separate_services({**otel_env(receiver), "TASKTIDE_REDIS_URL": redis_url}) as common,
    ):
        worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed with the worker
        worker = spawn(
            "worker",
            "tests.traced_app:app",
            *("--queues", queue, "-c", "2", "--pool", pool),
            env=common,
            cwd=ROOT,
            stderr=worker_log,
        )
        try:
            settings = ClientSettings.from_env(common)
            # A Submit call per task, so the scheduler's gRPC server span is in the trace too.
            with Client(settings=settings, hooks=TracingHooks(provider), transport="unary") as client:
                handle = client.submit("traced.fails_once", [str(tmp_path / "marker")], queue=queue, max_retries=2)
                assert handle.get(timeout=30) == "second attempt ok"
            provider.force_flush()

            def complete(spans: list[Span]) -> bool:
                mine = [s for s in spans if s.attributes.get("messaging.message.id") == handle.id]
                settled = [s for s in mine if s.name.startswith("settle")]
                processed = [s for s in mine if s.name.startswith("process")]
                traces = {s.trace_id for s in mine}
                in_trace = [s for s in spans if s.trace_id in traces]
                ids = {s.span_id for s in in_trace}
                results = [s for s in in_trace if s.service == "tasktide-results"]
                whole = all(s.parent_id in ids for s in in_trace if s.parent_id)
                scheduled = [s for s in mine if s.name.startswith("schedule")]
                submitted = [s for s in in_trace if s.name == "/tasktide.v1.Scheduler/Submit" and s.kind == SERVER]
                counts = (len(settled), len(processed), len(scheduled), len(submitted))
                return counts == (2, 2, 3, 1) and len(results) >= 2 and whole

            spans = receiver.wait_for(complete, timeout=30)
        finally:
            stop([worker])
            worker_log.close()
    provider.shutdown()

    (send,) = [s for s in spans if s.service == "tasktide-test-client" and s.kind == PRODUCER]
    assert send.attributes["messaging.message.id"] == handle.id
    assert send.name == f"send {queue}"
    assert send.parent_id == ""
    assert send.attributes["messaging.system"] == "tasktide"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == queue
    trace = [s for s in spans if s.trace_id == send.trace_id]
    by_id = {s.span_id: s for s in trace}
    assert {s.service for s in trace} == SERVICES

    # Parent/child: the trace is one tree rooted at the client's send span.
    for s in trace:
        if s is not send:
            assert s.parent_id in by_id, f"{s.service} {s.name} has a parent outside the trace"

    def ancestors(s: Span) -> list[Span]:
        out = []
        while s.parent_id:
            s = by_id[s.parent_id]
            out.append(s)
        return out

    # Both attempts: a CONSUMER span each on the worker, child of the registry's dispatch.
    attempts = sorted((s for s in trace if s.kind == CONSUMER), key=lambda s: s.attributes["tasktide.task.attempt"])
    assert [a.attributes["tasktide.task.attempt"] for a in attempts] == [0, 1]
    assert {a.service for a in attempts} == {"tasktide-worker"}
    assert [a.attributes["tasktide.outcome"] for a in attempts] == ["retry", "success"]
    assert attempts[0].status == ERROR and "exception" in attempts[0].events
    assert attempts[1].status != ERROR
    for a in attempts:
        assert a.name == f"process {queue}"
        assert a.attributes["messaging.operation.type"] == "process"
        dispatch = by_id[a.parent_id]
        assert (dispatch.service, dispatch.kind, dispatch.name) == ("tasktide-registry", PRODUCER, f"dispatch {queue}")
        assert dispatch.parent_id == send.span_id

    # The scheduler accepted the task, scheduled the retry and handed it over when due.
    schedules = [s for s in trace if s.service == "tasktide-scheduler" and s.name == f"schedule {queue}"]
    reasons = sorted(s.attributes["tasktide.schedule.reason"] for s in schedules)
    assert reasons == ["due", "retry", "submit"], [(s.name, s.attributes) for s in trace]
    assert all(s.parent_id == send.span_id for s in schedules)

    # The registry settled each attempt; the results service recorded inside the task's trace.
    settles = [s for s in trace if s.service == "tasktide-registry" and s.name == f"settle {queue}"]
    assert sorted(s.attributes["tasktide.outcome"] for s in settles) == ["retry", "success"]
    records = [s for s in trace if s.service == "tasktide-results" and s.kind == SERVER]
    assert records and all(s.name == "/tasktide.v1.Results/Record" for s in records)
    assert any(settles[0] in ancestors(r) or settles[1] in ancestors(r) for r in records)
    assert any(s.name == "/tasktide.v1.Scheduler/Submit" and s.kind == SERVER for s in trace)

    # Log records made by the task carry the trace id, the attempt's span id and the task id.
    lines = [line for line in (tmp_path / "worker.log").read_text().splitlines() if "of fails_once" in line]
    assert len(lines) == 2
    for line, attempt in zip(lines, attempts, strict=True):
        assert f"trace_id={send.trace_id} span_id={attempt.span_id}" in line
        assert f"task_id={handle.id}" in line
