"""Plugins the command line turns on from the environment (read once, at the entry point).

Tracing: when the OTEL_* variables ask for it (see tasktide.contrib.opentelemetry) and the `otel`
extra is installed. Spans still buffered are exported when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping

from tasktide._hooks import NO_HOOKS, Hooks

log = logging.getLogger("tasktide")


def hooks_from_env(service_name: str, env: Mapping[str, str] | None = None) -> Hooks:
    env = os.environ if env is None else env
    try:
        from tasktide.contrib.opentelemetry import from_env
    except ImportError as exc:
        if any(k.startswith("OTEL_EXPORTER_OTLP") or k == "OTEL_TRACES_EXPORTER" for k in env):
            log.warning("OTEL_* variables are set but tracing is off: %s (pip install 'tasktide[otel]')", exc)
        return NO_HOOKS
    try:
        tracing = from_env(service_name, env)
    except ValueError as exc:  # an OTEL_* value tasktide cannot use: run without tracing, say why
        log.error("tracing is off: %s", exc)
        return NO_HOOKS
    if tracing is None:
        return NO_HOOKS
    atexit.register(tracing.shutdown)
    return tracing.hooks
