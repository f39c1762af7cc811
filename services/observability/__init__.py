"""Tracing, metrics and log context for the services, configured once at the entry point.

`from_env` reads the standard OTEL_* variables (see tasktide.contrib.opentelemetry) and the metrics
address from the server settings, and returns an `Observability`: the ServiceHooks to pass to
`server.start`, the Prometheus endpoint to start, and the providers to shut down (flushing spans).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasktide_services.common.hooks import ServiceHooks, combine

log = logging.getLogger("tasktide.observability")


def _get(env: Mapping[str, str], key: str) -> str:
    return env.get(key, "").strip().lower()


def otlp_metrics_enabled(env: Mapping[str, str]) -> bool:
    if _get(env, "OTEL_SDK_DISABLED") == "true":
        return False
    exporters = _get(env, "OTEL_METRICS_EXPORTER")
    if exporters:
        return "otlp" in [e.strip() for e in exporters.split(",")]
    return bool(_get(env, "OTEL_EXPORTER_OTLP_ENDPOINT") or _get(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


@dataclass
class Observability:
    hooks: ServiceHooks
    metrics_address: str = ""
    providers: list[Any] = field(default_factory=list)
    registry: Any = None  # prometheus_client CollectorRegistry behind the metrics endpoint
    _http: Any = None

    def start(self) -> str:
        """Serve /metrics on metrics_address (host:port); returns the bound address, or ""."""
        if not self.metrics_address or self.registry is None:
            return ""
        from prometheus_client import start_http_server

        host, _, port = self.metrics_address.rpartition(":")
        server, thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
        self._http = (server, thread)
        bound = f"{host or '0.0.0.0'}:{server.server_port}"
        log.info("metrics for Prometheus on http://%s/metrics", bound)
        return bound

    def shutdown(self) -> None:
        if self._http is not None:
            server, thread = self._http
            threading.Thread(target=server.shutdown, daemon=True).start()
            server.server_close()
            self._http = None
        for p in self.providers:
            try:
                p.shutdown()
            except Exception:  # noqa: BLE001 - exporting at exit is best effort
                log.exception("shutting down %s failed", type(p).__name__)


def from_env(
    service_name: str, metrics_address: str = "", gauge_interval: float = 5.0, env: Mapping[str, str] | None = None
) -> Observability:
    env = os.environ if env is None else env
    parts: list[ServiceHooks] = []
    obs = Observability(ServiceHooks(), metrics_address)
    from tasktide.contrib.opentelemetry import resource_from_env, tracing_enabled

    resource = resource_from_env(service_name, env)
    if tracing_enabled(env):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from tasktide.contrib.opentelemetry._setup import exporters_from_env
        from tasktide_services.observability.tracing import ServiceTracing

        tracer_provider = TracerProvider(resource=resource)
        for exporter in exporters_from_env(env):
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        obs.providers.append(tracer_provider)
        parts.append(ServiceTracing(tracer_provider))
    readers: list[Any] = []
    if metrics_address:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        obs.registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=obs.registry, scope_info_enabled=False))
    if otlp_metrics_enabled(env):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if readers:
        from opentelemetry.sdk.metrics import MeterProvider

        from tasktide_services.observability.metrics import ServiceMetrics

        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        obs.providers.append(meter_provider)
        parts.append(ServiceMetrics(meter_provider.get_meter("tasktide"), gauge_interval))
    obs.hooks = combine(*parts)
    return obs


def observe(settings: Any, which: tuple[str, ...]) -> Observability:
    """What a server command does at start: observability from the environment and the settings,
    the metrics endpoint started, and log records carrying trace and task ids."""
    from tasktide._logging import install_log_context

    name = "tasktide-dev" if len(which) > 1 else f"tasktide-{which[0]}"
    obs = from_env(name, settings.metrics_address, settings.metrics_interval)
    bound = obs.start()
    if bound:
        print(f"tasktide metrics on http://{bound}/metrics", flush=True)
    install_log_context(obs.hooks)  # type: ignore[arg-type]
    return obs
