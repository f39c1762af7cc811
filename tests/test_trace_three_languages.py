"""One trace across three languages: a Python producer submits a task that a Go worker runs; the Go
task submits one that a Node.js worker runs. Every process exports over OTLP to a receiver in the
test, and the spans form one tree with one trace id."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tasktide import App, Client, ClientSettings, chain
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide_services.testing import PlatformThread
from tests.otlp_receiver import OtlpReceiver, Span
from tests.test_go_tracing import otel_env
from tests.test_go_worker_sessions import go_env, go_test_worker  # noqa: F401 - a fixture
from tests.test_node_client import NODE_DIR, _node_env
from tests.test_node_client import node as node  # noqa: F401 - a fixture

PRODUCER, CONSUMER = 4, 5


def test_python_to_go_to_node_is_one_trace(
    platform: PlatformThread,
    go_test_worker: Path,  # noqa: F811
    node: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    go_q, node_q = f"go-{uuid.uuid4().hex[:8]}", f"node-{uuid.uuid4().hex[:8]}"
    receiver = OtlpReceiver().start()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-python-producer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
    go_log = open(tmp_path / "go.log", "w")  # noqa: SIM115 - closed with the worker
    go_worker = subprocess.Popen(
        [go_test_worker],
        env=go_env(TASKTIDE_ADDRESS=platform.address, **otel_env(receiver, "test-go-worker"), TASKTIDE_QUEUES=go_q),
        stdout=go_log,
        stderr=subprocess.STDOUT,
    )
    node_worker = subprocess.Popen(
        [node, "test/fixtures/traced_worker.js"],
        cwd=NODE_DIR,
        env=_node_env(
            platform,
            TASKTIDE_QUEUES=node_q,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_INSECURE="true",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        settings = ClientSettings.from_env({}, address=platform.address)
        with Client(settings=settings, hooks=TracingHooks(provider)) as client:
            outer = client.submit("gotest.submit", ["node.add", node_q, [2, 3]], queue=go_q)
            inner_id = outer.get(timeout=60)
            assert client.result(inner_id, timeout=60) == 5
        provider.force_flush()
        node_worker.send_signal(signal.SIGTERM)  # it flushes its spans as it stops
        node_worker.wait(30)

        def tree(spans: list[Span]) -> list[Span] | None:
            def one(service: str, name: str, kind: int) -> Span | None:
                found = [s for s in spans if s.service == service and s.name == name and s.kind == kind]
                return found[0] if len(found) == 1 else None

            found = [
                one("test-python-producer", f"send {go_q}", PRODUCER),
                one("test-go-worker", f"process {go_q}", CONSUMER),
                one("test-go-worker", f"send {node_q}", PRODUCER),
                one("tasktide-node-worker", f"process {node_q}", CONSUMER),
            ]
            return None if None in found else [s for s in found if s is not None]

        spans = receiver.wait_for(lambda spans: tree(spans) is not None, timeout=30)
        found = tree(spans)
        assert found is not None, sorted((s.service, s.name) for s in spans)
        py_send, go_process, go_send, node_process = found
        assert {s.trace_id for s in found} == {py_send.trace_id}
        assert go_process.parent_id == py_send.span_id
        assert go_send.parent_id == go_process.span_id
        assert node_process.parent_id == go_send.span_id
        assert node_process.attributes["messaging.message.id"] == inner_id
        assert set(node_process.attributes) == set(go_process.attributes)
    finally:
        for proc in (go_worker, node_worker):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        go_log.close()
        receiver.stop()


def test_a_chain_over_go_and_node_is_one_trace_from_the_python_producer(
    platform: PlatformThread,
    go_test_worker: Path,  # noqa: F811
    node: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """chain(Go task, Node task) submitted whole by a traced Python producer: the workflow's send
    span writes its context into every step, so both steps' spans are in the producer's trace."""
    go_q, node_q = f"go-{uuid.uuid4().hex[:8]}", f"node-{uuid.uuid4().hex[:8]}"
    receiver = OtlpReceiver().start()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-python-producer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
    app = App("remote", settings=ClientSettings.from_env({}, address=platform.address), hooks=TracingHooks(provider))
    go_add = app.task(name="gotest.add", queue=go_q)(_elsewhere)
    node_add = app.task(name="node.add", queue=node_q)(_elsewhere)
    go_log = open(tmp_path / "go.log", "w")  # noqa: SIM115 - closed with the worker
    go_worker = subprocess.Popen(
        [go_test_worker],
        env=go_env(TASKTIDE_ADDRESS=platform.address, **otel_env(receiver, "test-go-worker"), TASKTIDE_QUEUES=go_q),
        stdout=go_log,
        stderr=subprocess.STDOUT,
    )
    node_worker = subprocess.Popen(
        [node, "test/fixtures/traced_worker.js"],
        cwd=NODE_DIR,
        env=_node_env(
            platform,
            TASKTIDE_QUEUES=node_q,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_INSECURE="true",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        handle = chain(go_add.s(2, 3), node_add.s(10)).apply_async()
        assert handle.get(timeout=60) == 15
        provider.force_flush()
        node_worker.send_signal(signal.SIGTERM)
        node_worker.wait(30)

        def steps(spans: list[Span]) -> list[Span] | None:
            found = [
                [s for s in spans if s.service == "test-go-worker" and s.name == f"process {go_q}"],
                [s for s in spans if s.service == "tasktide-node-worker" and s.name == f"process {node_q}"],
                [s for s in spans if s.service == "test-python-producer" and s.kind == PRODUCER],
            ]
            return [group[0] for group in found[:2]] + found[2] if all(found) else None

        spans = receiver.wait_for(lambda spans: steps(spans) is not None, timeout=30)
        found = steps(spans)
        assert found is not None, sorted((s.service, s.name) for s in spans)
        go_process, node_process, *creates = found
        assert go_process.kind == CONSUMER and node_process.kind == CONSUMER
        assert go_process.trace_id == node_process.trace_id == creates[0].trace_id
        assert {go_process.parent_id, node_process.parent_id} <= {s.span_id for s in creates}
    finally:
        for proc in (go_worker, node_worker):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        go_log.close()
        receiver.stop()
        app.client.close()


def _elsewhere(*args: object) -> object:
    raise AssertionError("runs on a Go or Node.js worker, never here")
