"""One trace across languages, both ways: a Python producer (TracingHooks) submits a task that a Node
worker (clients/node, its OpenTelemetry plug-in) runs, and a Node producer submits a task that a
Python worker runs; every process exports over OTLP to a receiver in the test."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tasktide import Client
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide_services.testing import PlatformThread, client_settings, spawn
from tests.conftest import ROOT
from tests.otlp_receiver import OtlpReceiver, Span
from tests.test_node_client import NODE_DIR, _node_env
from tests.test_node_client import node as node  # noqa: F401 - the fixture

PRODUCER, CONSUMER = 4, 5


@pytest.fixture()
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


def test_a_node_worker_continues_the_trace_of_a_python_producer(
    node: str, platform: PlatformThread, receiver: OtlpReceiver, queue_name: str
) -> None:
    env = _node_env(
        platform,
        TASKTIDE_QUEUES=queue_name,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_INSECURE="true",
    )
    worker = subprocess.Popen(
        [node, "test/fixtures/traced_worker.js"],
        cwd=NODE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "tasktide-test-client"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)))
    try:
        settings = client_settings(platform.address)
        with Client(settings=settings, hooks=TracingHooks(provider)) as client:
            handle = client.submit("node.add", [2, 3], queue=queue_name)
            assert handle.get(timeout=30) == 5
        provider.force_flush()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, out + err

        def complete(spans: list[Span]) -> bool:
            mine = [s for s in spans if s.attributes.get("messaging.message.id") == handle.id]
            return {s.kind for s in mine} >= {PRODUCER, CONSUMER}

        spans = receiver.wait_for(complete, timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        provider.shutdown()

    mine = [s for s in spans if s.attributes.get("messaging.message.id") == handle.id]
    (send,) = [s for s in mine if s.kind == PRODUCER]
    (process,) = [s for s in mine if s.kind == CONSUMER]
    assert send.service == "tasktide-test-client"
    assert process.service == "tasktide-node-worker"
    assert process.trace_id == send.trace_id
    assert process.parent_id == send.span_id, "the Node worker's span is a child of the Python send span"
    assert send.name == f"send {queue_name}"
    assert process.name == f"process {queue_name}"
    expected = {
        "messaging.system": "tasktide",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue_name,
        "messaging.message.id": handle.id,
        "tasktide.task.name": "node.add",
        "tasktide.task.attempt": 0,
        "tasktide.outcome": "success",
    }
    assert {k: process.attributes.get(k) for k in expected} == expected
    assert process.attributes["messaging.client.id"]


def test_a_python_worker_continues_the_trace_of_a_node_producer(
    node: str, platform: PlatformThread, receiver: OtlpReceiver, queue_name: str
) -> None:
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    worker = spawn(
        "worker",
        "tests.tasks_app:app",
        *("--queues", queue_name),
        env={"TASKTIDE_ADDRESS": platform.address, **otel},
        cwd=ROOT,
    )
    try:
        produced = subprocess.run(
            [node, "test/fixtures/traced_producer.js", queue_name],
            cwd=NODE_DIR,
            env=_node_env(platform, **otel),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert produced.returncode == 0, produced.stdout + produced.stderr
        done = json.loads(produced.stdout.strip().splitlines()[-1])
        assert done["result"] == 5

        def complete(spans: list[Span]) -> bool:
            mine = [s for s in spans if s.attributes.get("messaging.message.id") == done["id"]]
            return {s.kind for s in mine} >= {PRODUCER, CONSUMER}

        spans = receiver.wait_for(complete, timeout=30)
    finally:
        worker.terminate()
        worker.wait(20)

    mine = [s for s in spans if s.attributes.get("messaging.message.id") == done["id"]]
    (send,) = [s for s in mine if s.kind == PRODUCER]
    (process,) = [s for s in mine if s.kind == CONSUMER]
    assert send.service == "tasktide-node-producer"
    assert send.name == f"send {queue_name}"
    assert send.parent_id == ""
    assert {k: send.attributes.get(k) for k in ("messaging.system", "messaging.operation.type")} == {
        "messaging.system": "tasktide",
        "messaging.operation.type": "send",
    }
    assert send.attributes["tasktide.task.name"] == "t.add"
    assert process.service != send.service
    assert process.name == f"process {queue_name}"
    assert process.trace_id == send.trace_id
    assert process.parent_id == send.span_id, "the Python worker's span is a child of the Node send span"
