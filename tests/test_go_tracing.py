"""One trace across languages: a Python producer submits a task that a Go worker runs, and the Go
task submits one that a Python worker runs. Every process exports over OTLP to a receiver in the
test; the spans form one tree."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tasktide import Client, ClientSettings
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide_services.testing import PlatformThread, service_env, spawn
from tests.go_build import go_env
from tests.otlp_receiver import OtlpReceiver, Span
from tests.processes import ROOT
from tests.test_go_worker_sessions import go_test_worker  # noqa: F401 - a fixture

PRODUCER, CONSUMER = 4, 5


def otel_env(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": service,
    }


def test_python_to_go_to_python_is_one_trace(platform: PlatformThread, go_test_worker: Path, tmp_path: Path) -> None:  # noqa: F811
    go_q, py_q = f"go-{uuid.uuid4().hex[:8]}", f"py-{uuid.uuid4().hex[:8]}"
    receiver = OtlpReceiver().start()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-python-producer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
    address = service_env(platform.address)
    go_log = open(tmp_path / "go.log", "w")  # noqa: SIM115 - closed with the worker
    go_worker = subprocess.Popen(
        [go_test_worker],
        env=go_env(**address, **otel_env(receiver, "test-go-worker"), TASKTIDE_QUEUES=go_q),
        stdout=go_log,
        stderr=subprocess.STDOUT,
    )
    py_worker = spawn(
        "worker",
        "tests.tasks_app:app",
        "--queues",
        py_q,
        env={**address, **otel_env(receiver, "test-python-worker")},
        cwd=ROOT,
    )
    try:
        with Client(settings=ClientSettings.from_env(address), hooks=TracingHooks(provider)) as client:
            outer = client.submit("gotest.submit", ["t.add", py_q, [2, 3]], queue=go_q)
            inner_id = outer.get(timeout=60)
            assert client.result(inner_id, timeout=60) == 5
        provider.force_flush()

        def chain(spans: list[Span]) -> list[Span] | None:
            def one(service: str, name: str, kind: int) -> Span | None:
                found = [s for s in spans if s.service == service and s.name == name and s.kind == kind]
                return found[0] if len(found) == 1 else None

            found = [
                one("test-python-producer", f"send {go_q}", PRODUCER),
                one("test-go-worker", f"process {go_q}", CONSUMER),
                one("test-go-worker", f"send {py_q}", PRODUCER),
                one("test-python-worker", f"process {py_q}", CONSUMER),
            ]
            return None if None in found else [s for s in found if s is not None]

        spans = receiver.wait_for(lambda spans: chain(spans) is not None, timeout=30)
        found = chain(spans)
        assert found is not None, sorted((s.service, s.name) for s in spans)
        py_send, go_process, go_send, py_process = found
        assert {s.trace_id for s in found} == {py_send.trace_id}
        assert go_process.parent_id == py_send.span_id
        assert go_send.parent_id == go_process.span_id
        assert py_process.parent_id == go_send.span_id
        # The Go spans carry the attributes the Python ones do, with the same values where they match.
        assert set(go_process.attributes) == set(py_process.attributes)
        assert set(go_send.attributes) == set(py_send.attributes)
        assert go_process.attributes["messaging.message.id"] == outer.id
        assert go_process.attributes["tasktide.outcome"] == "success"
        assert go_send.attributes["messaging.message.id"] == inner_id == py_process.attributes["messaging.message.id"]
        for key in ("messaging.system", "messaging.operation.name", "messaging.operation.type"):
            assert go_process.attributes[key] == py_process.attributes[key]
            assert go_send.attributes[key] == py_send.attributes[key]
    finally:
        go_worker.terminate()
        go_worker.wait(30)
        go_log.close()
        py_worker.terminate()
        py_worker.wait(30)
        receiver.stop()
