"""Tracing tasktide with OpenTelemetry: a plugin, installed by passing its hooks explicitly.

    from tasktide.contrib.opentelemetry import TracingHooks
    app = tasktide.App("shop", hooks=TracingHooks())        # uses the tracer provider you configured

or, configured from the standard OTEL_* variables (what `tasktide worker` and the servers do):

    tracing = tasktide.contrib.opentelemetry.from_env("shop-web")   # None when tracing is off
    client = tasktide.Client(hooks=tracing.hooks if tracing else None)

A submit is a PRODUCER span whose context travels in the task's headers; each attempt on a worker is
a CONSUMER span; gRPC calls inside a trace are traced by opentelemetry-instrumentation-grpc, passed
as interceptors.

Without code: `opentelemetry-instrument tasktide worker ...` or `opentelemetry-instrument python
app.py` (package opentelemetry-distro, in the `otel` extra) runs TasktideInstrumentor, which makes
TracingHooks the default hooks of every App and Client (see instrumentation.py).

Needs the `otel` extra: pip install 'tasktide[otel]'.
"""

from tasktide.contrib.opentelemetry import conventions
from tasktide.contrib.opentelemetry._hooks import TracingHooks, in_recorded_span, record_outcome
from tasktide.contrib.opentelemetry._setup import Tracing, from_env, resource_from_env, tracing_enabled
from tasktide.contrib.opentelemetry.instrumentation import TasktideInstrumentor

__all__ = [
    "Tracing",
    "TasktideInstrumentor",
    "TracingHooks",
    "conventions",
    "from_env",
    "in_recorded_span",
    "record_outcome",
    "resource_from_env",
    "tracing_enabled",
]
