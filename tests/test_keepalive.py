"""Keepalive pings between the platform's processes: a caller whose server froze (SIGSTOP, a host
that stopped answering) learns it from an unanswered ping instead of waiting on a connection the
kernel keeps open. Servers accept pings as often as the clients send them (tasktide._settings)."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktide._settings import KEEPALIVE_OPTIONS, PING_MIN_MS
from tasktide_services.testing import PlatformThread

# More often than the clients' own keepalive, and still within what the servers accept.
PING_MS = PING_MIN_MS + 1_000
HELD = 25.0  # long enough for four pings: a server that refused them would end the call at the third


def test_an_idle_stream_pinged_every_few_seconds_is_not_sent_away(platform: PlatformThread) -> None:
    options = list({**dict(KEEPALIVE_OPTIONS), "grpc.keepalive_time_ms": PING_MS}.items())
    with grpc.insecure_channel(platform.address, options=options) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=HELD)
        first = next(call)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            next(call)  # nothing more is sent: the call ends at its deadline, or earlier if sent away
        held = time.monotonic() - started
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"ended after {held:.1f} s: {ended.value}"
