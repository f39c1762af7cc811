"""PRODUCER spans for Submit and SubmitBatch, as gRPC client interceptors.

The interceptor starts the span, writes its context into each TaskSpec's headers (W3C trace
context, through the configured propagator) and makes it current, so the gRPC client span of the
call, placed after this interceptor, is its child. Other methods pass straight through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from tasktide.contrib.opentelemetry import conventions as c

SUBMIT = "/tasktide.v1.Scheduler/Submit"
SUBMIT_BATCH = "/tasktide.v1.Scheduler/SubmitBatch"


def _method(details: Any) -> str:
    m = details.method
    return m.decode() if isinstance(m, bytes) else str(m)


class _Send:
    """The spans of one Submit or SubmitBatch call."""

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator, method: str, request: Any) -> None:
        self.batch = method == SUBMIT_BATCH
        specs = list(request.specs) if self.batch else [request.spec]
        queues = {c.queue_of(s.queue) for s in specs}
        queue = queues.pop() if len(queues) == 1 else ""
        attrs = c.attributes("send", queue, task_name="" if self.batch else specs[0].name)
        name = c.span_name("send", queue)
        if self.batch:
            attrs[c.BATCH_COUNT] = len(specs)
            if not queue:  # several queues: no single destination
                del attrs[c.DESTINATION]
                name = "send"
        kind = SpanKind.CLIENT if self.batch else SpanKind.PRODUCER
        self.span = tracer.start_span(name, kind=kind, attributes=attrs)
        self.creates: list[Span] = []
        target = request.specs if self.batch else [request.spec]
        if self.batch and self.span.is_recording():
            parent = trace.set_span_in_context(self.span)
            for spec in target:
                span = tracer.start_span(
                    c.span_name("create", spec.queue),
                    context=parent,
                    kind=SpanKind.PRODUCER,
                    attributes=c.attributes("create", spec.queue, task_name=spec.name),
                )
                propagator.inject(spec.headers, context=trace.set_span_in_context(span))
                self.creates.append(span)
        else:
            carrier: dict[str, str] = {}
            propagator.inject(carrier, context=trace.set_span_in_context(self.span))
            for spec in target:
                spec.headers.update(carrier)

    def finish(self, response: Any, error: BaseException | None) -> None:
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif self.span.is_recording():
            if self.batch:
                for span, r in zip(self.creates, response.results, strict=False):
                    span.set_attribute(c.MESSAGE_ID, r.task_id)
            else:
                self.span.set_attribute(c.MESSAGE_ID, response.task_id)
        for span in self.creates:
            span.end()
        self.span.end()


class ProducerInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """For grpc.intercept_channel (the blocking Client)."""

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator) -> None:
        self.tracer = tracer
        self.propagator = propagator

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        method = _method(details)
        if method not in (SUBMIT, SUBMIT_BATCH):
            return continuation(details, request)
        send = _Send(self.tracer, self.propagator, method, request)
        with trace.use_span(send.span, end_on_exit=False):
            call = continuation(details, request)
        error = call.exception()
        send.finish(None if error is not None else call.result(), error)
        return call


class AioProducerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """For grpc.aio channels (AsyncClient)."""

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator) -> None:
        self.tracer = tracer
        self.propagator = propagator

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        method = _method(details)
        if method not in (SUBMIT, SUBMIT_BATCH):
            return await continuation(details, request)
        send = _Send(self.tracer, self.propagator, method, request)
        try:
            with trace.use_span(send.span, end_on_exit=False):
                call = await continuation(details, request)
                response = await call
        except BaseException as exc:
            send.finish(None, exc)
            raise
        send.finish(response, None)
        return call
