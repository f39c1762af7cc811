"""A small OTLP/gRPC receiver for tests: the real protocol, spans and metric points kept in memory.

Exporters (the OpenTelemetry SDK's OTLP exporters in any process) send to `endpoint`; the test
reads what arrived as `Span` records (and metric names with their services) and waits for a
condition on them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    trace_id: str
    span_id: str
    parent_id: str
    status: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self.sink = sink

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        spans = []
        for rs in request.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        Span(
                            service=str(res.get("service.name", "")),
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            status=s.status.code,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            events=tuple(e.name for e in s.events),
                        )
                    )
        self.sink.add(spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self.sink = sink

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        for rm in request.resource_metrics:
            res = {a.key: _value(a.value) for a in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.sink.add_metric(str(res.get("service.name", "")), m.name)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpReceiver:
    def __init__(self) -> None:
        self._spans: list[Span] = []
        self.metrics: set[tuple[str, str]] = set()  # (service name, metric name)
        self._cond = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0)

    def add(self, spans: list[Span]) -> None:
        with self._cond:
            self._spans.extend(spans)
            self._cond.notify_all()

    def add_metric(self, service: str, name: str) -> None:
        with self._cond:
            self.metrics.add((service, name))
            self._cond.notify_all()

    @property
    def spans(self) -> list[Span]:
        with self._cond:
            return list(self._spans)

    def wait_for(self, check: Callable[[list[Span]], bool], timeout: float) -> list[Span]:
        """Wait until check(spans) is true; returns the spans (check it again to assert)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check(self._spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self._spans)
