"""Log records carry the trace and task ids; tasks submitted without a trace start one in the
scheduler, sampled or not."""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from tasktide._logging import install_log_context
from tasktide.v1 import task_pb2
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.observability.tracing import ServiceTracing


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _task(task_id: str) -> task_pb2.Task:
    return task_pb2.Task(id=task_id, spec=task_pb2.TaskSpec(name="shop.add", queue="q"))


def _log_through(hooks: ServiceHooks, tasks: list[task_pb2.Task]) -> logging.LogRecord:
    handler = Records()
    install_log_context(hooks, [handler])  # type: ignore[arg-type]
    logger = logging.getLogger("tasktide.test.logctx")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with hooks.scheduling(tasks, "submit"):
            logger.warning("scheduling")
    finally:
        logger.removeHandler(handler)
    (record,) = handler.records
    return record


def test_service_log_records_carry_trace_and_task_ids():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    task = _task("t1")
    record = _log_through(ServiceTracing(provider), [task])
    (span,) = exporter.get_finished_spans()
    assert record.trace_id == f"{span.context.trace_id:032x}"
    assert record.span_id == f"{span.context.span_id:016x}"
    assert record.task_id == "t1"
    assert "task_id=t1" in record.context and f"trace_id={record.trace_id}" in record.context
    # The task had no trace context: the scheduler's span starts its trace.
    assert task.spec.headers["traceparent"].split("-")[1] == record.trace_id
    assert span.attributes["messaging.message.id"] == "t1"


def test_sampled_out_records_nothing_but_propagates_the_decision():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    task = _task("t2")
    record = _log_through(ServiceTracing(provider), [task])
    assert exporter.get_finished_spans() == ()
    assert record.task_id == "" and record.context == ""  # no recorded span made current
    flags = int(task.spec.headers["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0  # not sampled: downstream services skip the task too


def test_without_hooks_records_have_empty_ids():
    record = _log_through(ServiceHooks(), [_task("t3")])
    assert (record.trace_id, record.span_id, record.task_id, record.context) == ("", "", "", "")
