"""PRODUCER spans for submissions, as interceptors of the client's transport (whichever it is).

The interceptor starts the span, writes its context into each TaskSpec's headers (W3C trace
context, through the configured propagator) and makes it current while the transport sends, so a
gRPC client span of the call (unary transport) is its child. The caller's specs are left as they
were: the headers go into copies. A pipelined submission's span ends when the platform confirms it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from tasktide._transport import AsyncSubmitter, AsyncSubmitterInterceptor, Submitter, SubmitterInterceptor
from tasktide.contrib.opentelemetry import conventions as c
from tasktide.v1 import task_pb2


def _copies(specs: Sequence[task_pb2.TaskSpec]) -> list[task_pb2.TaskSpec]:
    out = []
    for spec in specs:
        copy = task_pb2.TaskSpec()
        copy.CopyFrom(spec)
        out.append(copy)
    return out


class Send:
    """The spans of one submission or batch; writes their context into `specs`."""

    def __init__(
        self, tracer: Tracer, propagator: TextMapPropagator, specs: list[task_pb2.TaskSpec], batch: bool
    ) -> None:
        self.batch = batch
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
        target = specs
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

    def finish(self, ids: Sequence[str], error: BaseException | None) -> None:
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif self.span.is_recording():
            if self.batch:
                for span, task_id in zip(self.creates, ids, strict=False):
                    span.set_attribute(c.MESSAGE_ID, task_id)
            else:
                self.span.set_attribute(c.MESSAGE_ID, ids[0])
        for span in self.creates:
            span.end()
        self.span.end()


class TracingSubmitter(SubmitterInterceptor):
    """Traces the blocking client's submissions, over whichever transport `next` is."""

    def __init__(self, next: Submitter, tracer: Tracer, propagator: TextMapPropagator) -> None:  # noqa: A002
        super().__init__(next)
        self.tracer = tracer
        self.propagator = propagator

    def submit(self, spec: task_pb2.TaskSpec) -> str | Future[str]:
        specs = _copies([spec])
        send = Send(self.tracer, self.propagator, specs, batch=False)
        try:
            with trace.use_span(send.span, end_on_exit=False):
                out = self.next.submit(specs[0])
        except BaseException as exc:
            send.finish((), exc)
            raise
        if isinstance(out, Future):  # pipelined: the span lasts until the platform confirms
            out.add_done_callback(lambda f: send.finish(() if f.exception() else (f.result(),), f.exception()))
        else:
            send.finish((out,), None)
        return out

    def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        traced = _copies(specs)
        send = Send(self.tracer, self.propagator, traced, batch=True)
        try:
            with trace.use_span(send.span, end_on_exit=False):
                ids = self.next.submit_batch(traced)
        except BaseException as exc:
            send.finish((), exc)
            raise
        send.finish(ids, None)
        return ids


class AsyncTracingSubmitter(AsyncSubmitterInterceptor):
    """Traces the AsyncClient's submissions."""

    def __init__(self, next: AsyncSubmitter, tracer: Tracer, propagator: TextMapPropagator) -> None:  # noqa: A002
        super().__init__(next)
        self.tracer = tracer
        self.propagator = propagator

    async def submit(self, spec: task_pb2.TaskSpec) -> str:
        specs = _copies([spec])
        send = Send(self.tracer, self.propagator, specs, batch=False)
        try:
            with trace.use_span(send.span, end_on_exit=False):
                task_id = await self.next.submit(specs[0])
        except BaseException as exc:
            send.finish((), exc)
            raise
        send.finish((task_id,), None)
        return task_id

    async def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        traced = _copies(specs)
        send = Send(self.tracer, self.propagator, traced, batch=True)
        try:
            with trace.use_span(send.span, end_on_exit=False):
                ids = await self.next.submit_batch(traced)
        except BaseException as exc:
            send.finish((), exc)
            raise
        send.finish(ids, None)
        return ids
