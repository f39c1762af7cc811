"""TracingHooks: tasktide's client and worker hooks that trace with OpenTelemetry."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from tasktide._hooks import Hooks, OutcomeCallback, _ignore
from tasktide._transport import AsyncSubmitter, Submitter
from tasktide.contrib.opentelemetry import conventions as c
from tasktide.contrib.opentelemetry._producer import AsyncTracingSubmitter, Send, TracingSubmitter
from tasktide.contrib.opentelemetry._sampling import follows_parent, remote_span, unsampled
from tasktide.v1 import task_pb2, worker_pb2

_FAILED = (task_pb2.OUTCOME_KIND_FAILURE, task_pb2.OUTCOME_KIND_RETRY, task_pb2.OUTCOME_KIND_TIMEOUT)


def in_recorded_span(details: Any = None) -> bool:
    """gRPC filter: trace a call only inside a recorded span, so calls outside any task trace
    (waits, status reads, calls of sampled-out tasks) cost nothing and start no trace."""
    return trace.get_current_span().is_recording()


def record_outcome(span: Span, out: task_pb2.Outcome) -> None:
    """Status, outcome and error of an attempt on its span."""
    span.set_attribute(c.OUTCOME, c.OUTCOME_NAMES.get(out.kind, "unknown"))
    if out.kind in _FAILED:
        err = out.error
        span.add_event(
            "exception",
            {"exception.type": err.type, "exception.message": err.message, "exception.stacktrace": err.traceback},
        )
        span.set_status(Status(StatusCode.ERROR, f"{err.type}: {err.message}"))


class TracingHooks(Hooks):
    """Traces submits (PRODUCER), attempts on workers (CONSUMER) and the gRPC calls inside a trace.

    tracer_provider: where spans go (default: the one set with the OpenTelemetry API);
    propagator: how trace context is written to task headers (default: the configured one, W3C).
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, propagator: TextMapPropagator | None = None
    ) -> None:
        self.tracer_provider = tracer_provider
        self.tracer = trace.get_tracer("tasktide", tracer_provider=tracer_provider)
        self.propagator = propagator or propagate.get_global_textmap()
        self.skip_unsampled = follows_parent(tracer_provider)

    def intercept_submitter(self, next: Submitter) -> Submitter:  # noqa: A002
        # A PRODUCER span per submission, around whichever transport the client uses (_producer.py).
        return TracingSubmitter(next, self.tracer, self.propagator)

    def intercept_async_submitter(self, next: AsyncSubmitter) -> AsyncSubmitter:  # noqa: A002
        return AsyncTracingSubmitter(next, self.tracer, self.propagator)

    @contextlib.contextmanager
    def sending(self, specs: Sequence[task_pb2.TaskSpec]) -> Iterator[Callable[[Sequence[str]], None]]:
        # A workflow sent whole: one send span (a create span per task), its context in every task.
        send = Send(self.tracer, self.propagator, list(specs), batch=len(specs) > 1)
        ids: list[str] = []
        try:
            with trace.use_span(send.span, end_on_exit=False):
                yield ids.extend
        except BaseException as exc:
            send.finish((), exc)
            raise
        send.finish(ids, None)

    def wrap_channel(self, channel: Any) -> Any:
        # gRPC calls made inside a recorded span (a unary Submit inside its send span) get a client span.
        return intercept_channel(
            channel, client_interceptor(tracer_provider=self.tracer_provider, filter_=in_recorded_span)
        )

    def aio_client_interceptors(self) -> Sequence[Any]:
        return list(aio_client_interceptors(tracer_provider=self.tracer_provider, filter_=in_recorded_span))

    @contextlib.contextmanager
    def process(self, assignment: worker_pb2.Assignment, worker_id: str) -> Iterator[OutcomeCallback]:
        task = assignment.task
        tp = unsampled(task.spec.headers) if self.skip_unsampled else ""
        if tp:  # not sampled: no span, but tasks submitted from this one inherit the decision
            with trace.use_span(remote_span(tp), end_on_exit=False):
                yield _ignore
            return
        parent = self.propagator.extract(task.spec.headers)
        span = self.tracer.start_span(c.span_name("process", task.spec.queue), context=parent, kind=SpanKind.CONSUMER)
        if span.is_recording():
            span.set_attributes(c.attributes("process", task.spec.queue, task.id, task.spec.name))
            span.set_attribute(c.TASK_ATTEMPT, task.attempt)
            span.set_attribute(c.TASK_DELIVERY, assignment.delivery)
            span.set_attribute(c.CLIENT_ID, worker_id)
            # For a process pool's child, which runs the task under this span (see resume).
            self.propagator.inject(task.spec.headers, context=trace.set_span_in_context(span))
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            yield lambda out: record_outcome(span, out) if span.is_recording() else None

    @contextlib.contextmanager
    def resume(self, assignment: worker_pb2.Assignment) -> Iterator[None]:
        token = context.attach(self.propagator.extract(assignment.task.spec.headers))
        try:
            yield
        finally:
            context.detach(token)

    def log_ids(self) -> tuple[str, str]:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return "", ""
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
