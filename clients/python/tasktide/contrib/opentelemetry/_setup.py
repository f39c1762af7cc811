"""Tracing configured by the standard OTEL_* variables, read once at a program's entry point.

Tracing is on when OTEL_SDK_DISABLED is not "true" and either OTEL_TRACES_EXPORTER names an exporter
other than "none", or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). Exporters: "otlp" (the protocol from
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", the default, or
"http/protobuf") and "console". Everything else (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER and _ARG, OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS, OTEL_PROPAGATORS...) is read
by the OpenTelemetry SDK itself.

Under `opentelemetry-instrument` (TasktideInstrumentor has run), from_env uses the instrumentor's hooks
and the tracer provider the distro configured, so a program traces once, through one provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from tasktide.contrib.opentelemetry._hooks import TracingHooks


def _get(env: Mapping[str, str], key: str) -> str:
    return env.get(key, "").strip()


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if _get(env, "OTEL_SDK_DISABLED").lower() == "true":
        return False
    exporters = _get(env, "OTEL_TRACES_EXPORTER").lower()
    if exporters:
        return exporters != "none"
    return bool(_get(env, "OTEL_EXPORTER_OTLP_ENDPOINT") or _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _otlp(env: Mapping[str, str]) -> SpanExporter:
    protocol = (_get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _get(env, "OTEL_EXPORTER_OTLP_PROTOCOL")).lower()
    if protocol in ("", "grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

        return HTTPExporter()
    raise ValueError(f"unsupported OTLP protocol {protocol!r}: use grpc or http/protobuf")


def exporters_from_env(env: Mapping[str, str]) -> list[SpanExporter]:
    out: list[SpanExporter] = []
    for name in (_get(env, "OTEL_TRACES_EXPORTER") or "otlp").lower().split(","):
        name = name.strip()
        if name == "otlp":
            out.append(_otlp(env))
        elif name == "console":
            out.append(ConsoleSpanExporter())
        elif name not in ("", "none"):
            raise ValueError(f"unsupported OTEL_TRACES_EXPORTER {name!r}: use otlp, console or none")
    return out


def resource_from_env(default_service_name: str, env: Mapping[str, str]) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), named `default_service_name`
    unless those name the service."""
    named = _get(env, "OTEL_SERVICE_NAME") or "service.name=" in _get(env, "OTEL_RESOURCE_ATTRIBUTES")
    return Resource.create({} if named else {"service.name": default_service_name})


@dataclass
class Tracing:
    """A configured tracer provider and the hooks that use it; call shutdown() before exit.

    owned: the provider was made here (shutdown ends it); else it belongs to whoever configured it
    (opentelemetry-instrument), and shutdown only flushes the spans it holds."""

    provider: TracerProvider
    hooks: TracingHooks
    owned: bool = True

    def shutdown(self) -> None:
        if self.owned:
            self.provider.shutdown()
        else:
            self.provider.force_flush()


def from_env(default_service_name: str, env: Mapping[str, str] | None = None) -> Tracing | None:
    """Tracing as the OTEL_* variables ask, or None when it is off; under opentelemetry-instrument,
    the instrumentor's hooks with the globally configured provider."""
    from tasktide.contrib.opentelemetry.instrumentation import active_hooks

    instrumented = active_hooks()
    if instrumented is not None:
        provider = instrumented.tracer_provider or trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            return Tracing(provider, instrumented, owned=False)
    env = os.environ if env is None else env
    if not tracing_enabled(env):
        return None
    provider = TracerProvider(resource=resource_from_env(default_service_name, env))
    for exporter in exporters_from_env(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, TracingHooks(provider))
