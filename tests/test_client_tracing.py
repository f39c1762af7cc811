"""The client's PRODUCER spans: Submit, SubmitBatch (a "create" span per task) and AsyncClient,
their context written into each task's headers, against the real services."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tasktide import AsyncClient, Client, ClientSettings
from tasktide._spec import build_spec
from tasktide.contrib.opentelemetry import TracingHooks
from tasktide_services.testing import client_settings


@pytest.fixture()
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield TracingHooks(provider), exporter
    provider.shutdown()


def _parent_of(client: Client, task_id: str) -> tuple[str, str]:
    """(trace id, span id) written into the stored task's traceparent."""
    _, trace_id, span_id, _ = client.get_task(task_id).spec.headers["traceparent"].split("-")
    return trace_id, span_id


@pytest.mark.parametrize("transport", ["unary", "stream", "pipelined", "redis"])
def test_submit_is_a_producer_span_carried_in_the_headers(platform, redis_server, queue_name, traced, transport):
    """Tracing wraps whichever transport the client uses."""
    hooks, exporter = traced
    env = {"TASKTIDE_SUBMIT_REDIS_URL": redis_server.url} if transport == "redis" else {}
    settings = ClientSettings.from_env(env, address=platform.address)
    base = None if transport == "redis" else transport
    with Client(settings=settings, hooks=hooks, transport=base) as client:
        handle = client.submit("t.add", [1, 2], queue=queue_name)
        client.flush()
        stored = _parent_of(client, handle.id)
    spans = exporter.get_finished_spans()
    (send,) = [s for s in spans if s.kind == SpanKind.PRODUCER]
    assert send.name == f"send {queue_name}"
    assert send.attributes["messaging.message.id"] == handle.id
    assert send.attributes["messaging.destination.name"] == queue_name
    assert send.attributes["tasktide.task.name"] == "t.add"
    assert stored == (f"{send.context.trace_id:032x}", f"{send.context.span_id:016x}")
    rpcs = [s for s in spans if s.kind == SpanKind.CLIENT]
    if transport == "unary":  # the Submit call's span is the send span's child
        (rpc,) = rpcs
        assert rpc.name.endswith("/Submit") and rpc.parent.span_id == send.context.span_id
    else:  # no call per task: the stream (opened outside any trace) and Redis make no span here
        assert not rpcs
    # Reading the result is not part of any trace.
    assert not [s for s in spans if s.name.endswith(("/Get", "/Wait", "/GetTask"))]


def test_batch_has_a_create_span_per_task(platform, queue_name, traced):
    hooks, exporter = traced
    settings = client_settings(platform.address)
    specs = [build_spec("t.add", [i, i], queue=queue_name) for i in range(3)]
    with Client(settings=settings, hooks=hooks) as client:
        handles = client.submit_many(specs)
        stored = {h.id: _parent_of(client, h.id) for h in handles}
    spans = exporter.get_finished_spans()
    (send,) = [s for s in spans if s.name == f"send {queue_name}"]
    assert send.kind == SpanKind.CLIENT and send.attributes["messaging.batch.message_count"] == 3
    creates = {s.attributes["messaging.message.id"]: s for s in spans if s.kind == SpanKind.PRODUCER}
    assert set(creates) == {h.id for h in handles}
    for task_id, span in creates.items():
        assert span.parent.span_id == send.context.span_id
        assert stored[task_id] == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    assert not specs[0].headers  # the caller's specs are left as they were


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_async_client_submit_is_traced(platform, queue_name, traced, transport):
    hooks, exporter = traced
    settings = client_settings(platform.address)

    async def submit() -> str:
        async with AsyncClient(settings=settings, hooks=hooks, transport=transport) as client:
            return (await client.submit("t.add", [1, 2], queue=queue_name)).id

    task_id = asyncio.run(submit())
    spans = exporter.get_finished_spans()
    (send,) = [s for s in spans if s.kind == SpanKind.PRODUCER]
    assert send.attributes["messaging.message.id"] == task_id
    rpcs = [s for s in spans if s.kind == SpanKind.CLIENT]
    if transport == "unary":  # the Submit call's span is the send span's child
        (rpc,) = rpcs
        assert rpc.parent.span_id == send.context.span_id
    else:  # no call per task: the stream, opened outside any trace, makes no span here
        assert not rpcs
    with Client(settings=settings) as plain:
        assert _parent_of(plain, task_id)[1] == f"{send.context.span_id:016x}"
