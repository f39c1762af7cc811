"""The services' task spans: parents from the task headers, links to the tasks a task follows."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasktide.contrib.opentelemetry.conventions import LINKS_HEADER, link_header
from tasktide.v1 import task_pb2
from tasktide_services.observability.tracing import ServiceTracing

PARENT = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
MEMBERS = ["00-" + "a" * 32 + "-" + "b" * 16 + "-01", "00-" + "c" * 32 + "-" + "d" * 16 + "-00"]


def test_schedule_span_is_a_child_of_the_submit_and_links_to_followed_tasks():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    headers = {"traceparent": PARENT, LINKS_HEADER: link_header([*MEMBERS, "", "garbage"])}
    task = task_pb2.Task(id="cb", spec=task_pb2.TaskSpec(name="shop.callback", queue="q", headers=headers))
    with ServiceTracing(provider).scheduling([task], "submit"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.name == "schedule q"
    assert f"{span.context.trace_id:032x}" == "1" * 32 and f"{span.parent.span_id:016x}" == "2" * 16
    linked = [(f"{lk.context.trace_id:032x}", f"{lk.context.span_id:016x}") for lk in span.links]
    assert linked == [("a" * 32, "b" * 16), ("c" * 32, "d" * 16)]
    assert task.spec.headers["traceparent"] == PARENT  # a task that has a trace keeps it
