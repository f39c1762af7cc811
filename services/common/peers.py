"""Calls across ownership lines (scheduler -> registry, registry -> results, ...): gRPC stubs, or,
for a service hosted in the same process, its servicer called directly (see bind_local)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from tasktide.v1 import results_pb2_grpc, scheduler_pb2_grpc, worker_pb2_grpc, workflow_pb2_grpc
from tasktide_services.common.auth import as_service
from tasktide_services.common.settings import ServerSettings


class Peers:
    def __init__(self, settings: ServerSettings, interceptors: Sequence[Any] = ()) -> None:
        opts = [
            ("grpc.max_send_message_length", settings.limits.max_message_bytes),
            ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
        ]
        self._settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        chain = list(interceptors) or None
        for which in ("scheduler", "registry", "results"):
            addr = settings.peer(which)
            if addr not in self._channels:
                self._channels[addr] = (
                    grpc.aio.secure_channel(addr, settings.tls.channel_credentials(), options=opts, interceptors=chain)
                    if settings.tls.enabled or settings.tls.ca
                    else grpc.aio.insecure_channel(addr, options=opts, interceptors=chain)
                )
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self._channels[settings.peer("scheduler")])
        self.registry = worker_pb2_grpc.RegistryStub(self._channels[settings.peer("registry")])
        self.results = results_pb2_grpc.ResultsStub(self._channels[settings.peer("results")])
        # Workflows are hosted with the scheduler.
        self.workflows = workflow_pb2_grpc.WorkflowsStub(self._channels[settings.peer("scheduler")])

    def bind_local(self, which: str, servicer: object, own_address: str) -> None:
        """Reach `which` through `servicer`, hosted in this process, instead of a gRPC hop to
        ourselves, when that peer's address is this server's. The owner's handler still does the
        work (validation, its scripts); only the loopback call and its serialization are skipped."""
        if self._settings.peer("scheduler" if which == "workflows" else which) == own_address:
            setattr(self, which, _Local(servicer))

    def local_servicer(self, which: str) -> Any | None:
        """The servicer of `which` when it is hosted in this process, else None."""
        peer = getattr(self, which)
        return peer.servicer if isinstance(peer, _Local) else None

    def local_store(self, which: str) -> Any | None:
        """The store of `which` when it is hosted in this process (its published module, for
        writing onto a shared pipeline), else None."""
        return getattr(self.local_servicer(which), "store", None)

    def local_stores(self, redis: object, *which: str) -> list[Any] | None:
        """The stores of `which`, when every one is hosted in this process on the connection
        `redis`, so their writes can share one pipeline with the caller's; else None."""
        stores = [self.local_store(w) for w in which]
        if any(st is None or st.redis is not redis for st in stores):
            return None
        return stores

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()


class _Local:
    """A stub look-alike that awaits the servicer's method with the request (no context)."""

    def __init__(self, servicer: object) -> None:
        self.servicer = servicer

    def __getattr__(self, method: str) -> Any:
        fn = getattr(self.servicer, method)

        async def call(request: Any, **_call_options: Any) -> Any:
            with as_service():  # a call between services, whoever made the call that led to it
                return await fn(request, None)

        return call
