"""ServiceTracing: the services' spans of a task, children of the trace context in its headers.

gRPC calls are traced by opentelemetry-instrumentation-grpc, passed as interceptors: a server span
only when the caller sent a trace context, a client span only inside a recorded span, so
housekeeping calls (pumps, reapers, waits) start no traces. The task spans are listed in
tasktide.contrib.opentelemetry.conventions. Around a batch of one task its span is made current, so
the calls made for it (Enqueue, Record, Retry) and the logs carry its trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TracerProvider

from tasktide._logging import task_scope
from tasktide.contrib.opentelemetry import conventions as c
from tasktide.contrib.opentelemetry import in_recorded_span
from tasktide.contrib.opentelemetry._sampling import follows_parent, unsampled
from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.common.hooks import ServiceHooks

TRACEPARENT = "traceparent"


def has_trace_context(details: Any) -> bool:
    """gRPC server filter: trace a call only when the caller sent a trace context."""
    for item in details.invocation_metadata or ():
        if item[0] == TRACEPARENT:
            return True
    return False


def _links(header: str) -> list[Link]:
    """Links to the trace contexts of a LINKS_HEADER value (malformed entries are skipped)."""
    out = []
    for tp in header.split(","):
        parts = tp.strip().split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            try:
                ctx = SpanContext(int(parts[1], 16), int(parts[2], 16), True, TraceFlags(int(parts[3], 16)))
            except ValueError:
                continue
            out.append(Link(ctx, {"tasktide.link": "follows"}))
    return out


class ServiceTracing(ServiceHooks):
    def __init__(self, tracer_provider: TracerProvider | None = None, propagator: TextMapPropagator | None = None):
        self.tracer_provider = tracer_provider
        self.tracer = trace.get_tracer("tasktide.services", tracer_provider=tracer_provider)
        self.propagator = propagator or propagate.get_global_textmap()
        self.skip_unsampled = follows_parent(tracer_provider)

    def _traced(self, task: task_pb2.Task) -> bool:
        """False for a task whose trace context says it is not sampled (it gets no spans)."""
        return not (self.skip_unsampled and unsampled(task.spec.headers))

    def server_interceptors(self) -> Sequence[Any]:
        return [aio_server_interceptor(tracer_provider=self.tracer_provider, filter_=has_trace_context)]

    def client_interceptors(self) -> Sequence[Any]:
        return aio_client_interceptors(tracer_provider=self.tracer_provider, filter_=in_recorded_span)

    def _start(
        self, operation: str, task: task_pb2.Task, kind: SpanKind = SpanKind.INTERNAL, links: Sequence[Link] = ()
    ) -> Span:
        parent = self.propagator.extract(task.spec.headers)
        name = c.span_name(operation, task.spec.queue)
        span = self.tracer.start_span(name, context=parent, kind=kind, links=links)
        if span.is_recording():
            span.set_attributes(c.attributes(operation, task.spec.queue, task.id, task.spec.name))
            span.set_attribute(c.TASK_ATTEMPT, task.attempt)
        return span

    @contextlib.contextmanager
    def _scope(self, spans: list[tuple[Span, str]]) -> Iterator[None]:
        """End the spans when the block ends; the only recorded one is current meanwhile."""
        recorded = [(s, tid) for s, tid in spans if s.is_recording()]
        try:
            if len(recorded) == 1:
                span, task_id = recorded[0]
                with trace.use_span(span, end_on_exit=False), task_scope(task_id):
                    yield
            else:
                yield
        except BaseException as exc:
            for s, _ in recorded:
                s.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            for s, _ in spans:
                s.end()

    def scheduling(self, tasks: Sequence[task_pb2.Task], reason: str) -> contextlib.AbstractContextManager[None]:
        spans = []
        for t in tasks:
            if not self._traced(t):
                continue
            followed = t.spec.headers.get(c.LINKS_HEADER, "")
            span = self._start("schedule", t, links=_links(followed) if followed else ())
            if span.is_recording():
                span.set_attribute(c.SCHEDULE_REASON, reason)
            if TRACEPARENT not in t.spec.headers:  # submitted without a trace: the trace starts here
                self.propagator.inject(t.spec.headers, context=trace.set_span_in_context(span))
            spans.append((span, t.id))
        return self._scope(spans)

    def dispatched(self, worker_id: str, assignments: Sequence[worker_pb2.Assignment]) -> None:
        for a in assignments:
            if not self._traced(a.task):
                continue
            span = self._start("dispatch", a.task, SpanKind.PRODUCER)
            if span.is_recording():
                span.set_attribute(c.TASK_DELIVERY, a.delivery)
                span.set_attribute(c.CLIENT_ID, worker_id)
                # The worker's attempt becomes a child of this dispatch (the stored task keeps its context).
                self.propagator.inject(a.task.spec.headers, context=trace.set_span_in_context(span))
            span.end()

    def settling(
        self, pairs: Sequence[tuple[task_pb2.Outcome, task_pb2.Task]]
    ) -> contextlib.AbstractContextManager[None]:
        spans = []
        for outcome, task in pairs:
            if not self._traced(task):
                continue
            span = self._start("settle", task)
            if span.is_recording():
                span.set_attribute(c.TASK_ATTEMPT, outcome.attempt)
                span.set_attribute(c.CLIENT_ID, outcome.worker_id)
                span.set_attribute(c.OUTCOME, c.OUTCOME_NAMES.get(outcome.kind, "unknown"))
            spans.append((span, task.id))
        return self._scope(spans)

    def dead_lettered(self, tasks: Sequence[task_pb2.Task], reason: str) -> None:
        for t in tasks:
            if not self._traced(t):
                continue
            span = self._start("dead_letter", t)
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, reason))
            span.end()

    def log_ids(self) -> tuple[str, str]:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return "", ""
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
