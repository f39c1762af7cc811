"""The cheap path for tasks that are not sampled.

When the tracer provider's sampler follows the parent's decision (ParentBased, the SDK's default),
a task whose traceparent header says "not sampled" gets no span anywhere: that is read from the
header's last hex digit, without parsing the context or asking the sampler, so such a task costs
a dictionary lookup per hook.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

TRACEPARENT = "traceparent"
_UNSAMPLED_LAST_DIGIT = frozenset("02468ace")


def follows_parent(provider: object | None) -> bool:
    """True if the provider's sampler takes a remote parent's decision (so it can be skipped)."""
    from opentelemetry.sdk.trace.sampling import ParentBased

    provider = provider if provider is not None else trace.get_tracer_provider()
    return isinstance(getattr(provider, "sampler", None), ParentBased)


def unsampled(headers: Mapping[str, str]) -> str:
    """The traceparent if it is well formed and not sampled, else ""."""
    tp = headers.get(TRACEPARENT, "")
    if len(tp) == 55 and tp[-1] in _UNSAMPLED_LAST_DIGIT:
        return tp
    return ""


def remote_span(traceparent: str) -> NonRecordingSpan:
    """A non-recording span for a well-formed traceparent, to carry its decision to child tasks."""
    ctx = SpanContext(
        trace_id=int(traceparent[3:35], 16),
        span_id=int(traceparent[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(traceparent[53:55], 16)),
    )
    return NonRecordingSpan(ctx)
