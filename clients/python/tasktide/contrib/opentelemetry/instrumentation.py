"""Zero-code tracing: TasktideInstrumentor, which `opentelemetry-instrument` finds through the
`opentelemetry_instrumentor` entry point of the tasktide distribution.

    opentelemetry-instrument tasktide worker shop.tasks:app
    opentelemetry-instrument python app.py

instrument() makes TracingHooks the default plugin of every App, Client and AsyncClient made after it
that is given no hooks of its own (an explicit `hooks=` still wins); uninstrument() stops that for
those made after it. It sets the core's default plugin (tasktide._hooks.set_default_hooks) when
instrument() runs, never at import time, and touches no other library. The hooks use the tracer provider given to
instrument(tracer_provider=...), else the global one, which `opentelemetry-instrument` configures
from the OTEL_* variables; `tasktide worker` and `tasktide submit` then use these hooks instead of
setting up a tracer provider of their own (see _setup.from_env).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tasktide._hooks import set_default_hooks
from tasktide.contrib.opentelemetry._hooks import TracingHooks


def _instrumented(instrumentor_class: Callable[[], Any]) -> bool:
    try:
        return bool(instrumentor_class().is_instrumented_by_opentelemetry)
    except Exception:  # noqa: BLE001 - a version of the gRPC instrumentation that differs: keep ours
        return False


def _grpc_client_instrumented() -> bool:
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient

    return _instrumented(GrpcInstrumentorClient)


def _grpc_aio_client_instrumented() -> bool:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    return _instrumented(GrpcAioInstrumentorClient)


class InstrumentedHooks(TracingHooks):
    """TracingHooks that leave gRPC client spans to opentelemetry-instrumentation-grpc when it already
    traces every channel (as it does under opentelemetry-instrument), so no call is traced twice."""

    def wrap_channel(self, channel: Any) -> Any:
        return channel if _grpc_client_instrumented() else super().wrap_channel(channel)

    def aio_client_interceptors(self) -> Sequence[Any]:
        return () if _grpc_aio_client_instrumented() else super().aio_client_interceptors()


class TasktideInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every tasktide App, Client and AsyncClient made after instrument() (see the module)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("tasktide >= 0.1",)

    def _instrument(self, **kwargs: Any) -> None:
        provider: TracerProvider | None = kwargs.get("tracer_provider")
        propagator: TextMapPropagator | None = kwargs.get("propagator")
        # Made on first use: the distro may set the global tracer provider after instrumentors run.
        made: list[TracingHooks] = []
        lock = threading.Lock()

        def hooks() -> TracingHooks:
            with lock:  # one plugin for every App and Client, whichever thread makes the first
                if not made:
                    made.append(InstrumentedHooks(provider, propagator))
                return made[0]

        self._hooks_factory: Callable[[], TracingHooks] | None = hooks
        set_default_hooks(hooks)

    def _uninstrument(self, **kwargs: Any) -> None:
        set_default_hooks(None)
        self._hooks_factory = None

    def current_hooks(self) -> TracingHooks | None:
        """The hooks new Apps and Clients get while instrumented, else None."""
        factory: Callable[[], TracingHooks] | None = getattr(self, "_hooks_factory", None)
        return factory() if factory is not None else None


def active_hooks() -> TracingHooks | None:
    """The instrumentor's hooks when instrument() has run (and uninstrument() has not), else None."""
    return TasktideInstrumentor().current_hooks()
