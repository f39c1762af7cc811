"""Choosing a client's transport chain, once, when the client is built.

Base transport, from `transport=` or the settings (TASKTIDE_SUBMIT_TRANSPORT, TASKTIDE_PIPELINED_SUBMIT):
"stream" (the default), "pipelined" (the blocking Client's stream, unconfirmed; the AsyncClient's
stream is always confirmed: its callers gather submissions concurrently instead) or "unary". With
TASKTIDE_SUBMIT_REDIS_URL, the transport another package registers under the entry-point group
`tasktide.transports` as "redis" (tasktide-server does) wraps the base one, which keeps the tasks
it does not take. The plugin's interceptors (tracing) wrap the whole.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol

from tasktide._async_submitter import AsyncStreamSubmitter
from tasktide._exceptions import ConfigurationError
from tasktide._hooks import Hooks
from tasktide._settings import ClientSettings
from tasktide._submitter import StreamSubmitter
from tasktide._transport import AsyncSubmitter, AsyncUnarySubmitter, Submitter, UnarySubmitter
from tasktide.v1 import scheduler_pb2_grpc

ENTRY_POINT_GROUP = "tasktide.transports"
REDIS = "redis"
BASES = ("stream", "pipelined", "unary")


class TransportPlugin(Protocol):
    """What a package registers under the entry-point group `tasktide.transports`: builds its
    transport for a URL, around the `fallback` that takes the tasks it does not."""

    def blocking(self, url: str, fallback: Submitter) -> Submitter:
        """The transport of a blocking Client."""
        ...

    def asyncio(self, url: str, fallback: AsyncSubmitter) -> AsyncSubmitter:
        """The transport of an AsyncClient."""
        ...


def registered(name: str) -> TransportPlugin:
    """The transport registered as `name`; ConfigurationError when no installed package registers it."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    for ep in found:
        plugin: TransportPlugin = ep.load()
        return plugin
    raise ConfigurationError(
        f"no tasktide transport {name!r} is installed (entry point group {ENTRY_POINT_GROUP}); "
        "TASKTIDE_SUBMIT_REDIS_URL needs the tasktide-server package installed beside the client"
    )


def base_name(settings: ClientSettings, transport: str | None) -> str:
    name = transport or ("pipelined" if settings.pipelined_submit else settings.submit_transport) or "stream"
    if name not in BASES:
        raise ConfigurationError(f"unknown submit transport {name!r}: use one of {', '.join(BASES)}")
    return name


def blocking_submitter(
    settings: ClientSettings, stub: scheduler_pb2_grpc.SchedulerStub, hooks: Hooks, transport: str | None = None
) -> Submitter:
    """The blocking Client's chain."""
    name = base_name(settings, transport)
    address = settings.scheduler()
    chain: Submitter = (
        UnarySubmitter(stub, address) if name == "unary" else StreamSubmitter(stub, address, name == "pipelined")
    )
    if settings.submit_redis_url:
        chain = registered(REDIS).blocking(settings.submit_redis_url, chain)
    return hooks.intercept_submitter(chain)


def async_submitter(
    settings: ClientSettings, stub: scheduler_pb2_grpc.SchedulerStub, hooks: Hooks, transport: str | None = None
) -> AsyncSubmitter:
    """The AsyncClient's chain."""
    name = base_name(settings, transport)
    address = settings.scheduler()
    chain: AsyncSubmitter = (
        AsyncUnarySubmitter(stub, address) if name == "unary" else AsyncStreamSubmitter(stub, address)
    )
    if settings.submit_redis_url:
        chain = registered(REDIS).asyncio(settings.submit_redis_url, chain)
    return hooks.intercept_async_submitter(chain)
