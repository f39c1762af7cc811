"""One trace across three languages: a traced Python producer, a Go worker and a Node.js worker, each
exporting over OTLP to a receiver in the test. A task of the Go worker submits one that the Node.js
worker runs; a chain of a Go step and a Node.js step, submitted whole, is one trace too."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tasktide import App, Client, chain
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide_services.testing import PlatformThread, client_settings, service_env
from tests.go_build import go_env
from tests.otlp_receiver import OtlpReceiver, Span
from tests.test_go_tracing import otel_env
from tests.test_go_worker_sessions import go_test_worker  # noqa: F401 - a fixture
from tests.test_node_client import NODE_DIR, _node_env
from tests.test_node_client import node as node  # noqa: F401 - a fixture

PRODUCER, CONSUMER = 4, 5


@dataclass
class Languages:
    go_q: str
    node_q: str
    receiver: OtlpReceiver
    provider: TracerProvider  # the Python producer's
    node_worker: subprocess.Popen[bytes]

    def flush(self) -> None:
        """The producer's spans, and the Node.js worker's (it flushes them as it stops)."""
        self.provider.force_flush()
        self.node_worker.send_signal(signal.SIGTERM)
        self.node_worker.wait(30)

    def spans(self, found: Callable[[list[Span]], list[Span] | None]) -> list[Span]:
        spans = self.receiver.wait_for(lambda spans: found(spans) is not None, timeout=30)
        out = found(spans)
        assert out is not None, sorted((s.service, s.name) for s in spans)
        return out


@pytest.fixture()
def languages(
    platform: PlatformThread,
    go_test_worker: Path,  # noqa: F811
    node: str,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Languages]:
    go_q, node_q = f"go-{uuid.uuid4().hex[:8]}", f"node-{uuid.uuid4().hex[:8]}"
    receiver = OtlpReceiver().start()
    provider = TracerProvider(resource=Resource.create({"service.name": "test-python-producer"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
    go_log = open(tmp_path / "go.log", "w")  # noqa: SIM115 - closed with the worker
    go_worker = subprocess.Popen(
        [go_test_worker],
        env=go_env(**service_env(platform.address), **otel_env(receiver, "test-go-worker"), TASKTIDE_QUEUES=go_q),
        stdout=go_log,
        stderr=subprocess.STDOUT,
    )
    node_env = _node_env(
        platform,
        TASKTIDE_QUEUES=node_q,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_INSECURE="true",
    )
    node_worker = subprocess.Popen(
        [node, "test/fixtures/traced_worker.js"],
        cwd=NODE_DIR,
        env=node_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Languages(go_q, node_q, receiver, provider, node_worker)
    finally:
        for proc in (go_worker, node_worker):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        go_log.close()
        receiver.stop()


def _one(spans: list[Span], service: str, name: str, kind: int) -> Span | None:
    found = [s for s in spans if s.service == service and s.name == name and s.kind == kind]
    return found[0] if len(found) == 1 else None


def test_python_to_go_to_node_is_one_trace(platform: PlatformThread, languages: Languages) -> None:
    go_q, node_q = languages.go_q, languages.node_q
    settings = client_settings(platform.address)
    with Client(settings=settings, hooks=TracingHooks(languages.provider)) as client:
        outer = client.submit("gotest.submit", ["node.add", node_q, [2, 3]], queue=go_q)
        inner_id = outer.get(timeout=60)
        assert client.result(inner_id, timeout=60) == 5
    languages.flush()

    def tree(spans: list[Span]) -> list[Span] | None:
        found = [
            _one(spans, "test-python-producer", f"send {go_q}", PRODUCER),
            _one(spans, "test-go-worker", f"process {go_q}", CONSUMER),
            _one(spans, "test-go-worker", f"send {node_q}", PRODUCER),
            _one(spans, "tasktide-node-worker", f"process {node_q}", CONSUMER),
        ]
        return None if None in found else [s for s in found if s is not None]

    py_send, go_process, go_send, node_process = languages.spans(tree)
    assert {s.trace_id for s in (go_process, go_send, node_process)} == {py_send.trace_id}
    assert go_process.parent_id == py_send.span_id
    assert go_send.parent_id == go_process.span_id
    assert node_process.parent_id == go_send.span_id
    assert node_process.attributes["messaging.message.id"] == inner_id
    assert set(node_process.attributes) == set(go_process.attributes)


def test_a_chain_over_go_and_node_is_one_trace_from_the_python_producer(
    platform: PlatformThread, languages: Languages
) -> None:
    """chain(Go task, Node task) submitted whole by a traced Python producer: the workflow's send
    span writes its context into every step, so both steps' spans are in the producer's trace."""
    go_q, node_q = languages.go_q, languages.node_q
    settings = client_settings(platform.address)
    app = App("remote", settings=settings, hooks=TracingHooks(languages.provider))
    go_add = app.task(name="gotest.add", queue=go_q)(_elsewhere)
    node_add = app.task(name="node.add", queue=node_q)(_elsewhere)
    try:
        assert chain(go_add.s(2, 3), node_add.s(10)).apply_async().get(timeout=60) == 15
    finally:
        app.client.close()
    languages.flush()

    def steps(spans: list[Span]) -> list[Span] | None:
        go = [s for s in spans if s.service == "test-go-worker" and s.name == f"process {go_q}"]
        node = [s for s in spans if s.service == "tasktide-node-worker" and s.name == f"process {node_q}"]
        creates = [s for s in spans if s.service == "test-python-producer" and s.kind == PRODUCER]
        return [go[0], node[0], *creates] if go and node and creates else None

    go_process, node_process, *creates = languages.spans(steps)
    assert go_process.kind == CONSUMER and node_process.kind == CONSUMER
    assert go_process.trace_id == node_process.trace_id == creates[0].trace_id
    assert {go_process.parent_id, node_process.parent_id} <= {s.span_id for s in creates}


def _elsewhere(*args: object) -> object:
    raise AssertionError("runs on a Go or Node.js worker, never here")
