"""gRPC stubs for calls across ownership lines (scheduler -> registry, registry -> results, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from tasktide.v1 import results_pb2_grpc, scheduler_pb2_grpc, worker_pb2_grpc
from tasktide_services.common.settings import ServerSettings


class Peers:
    def __init__(self, settings: ServerSettings, interceptors: Sequence[Any] = ()) -> None:
        opts = [
            ("grpc.max_send_message_length", settings.limits.max_message_bytes),
            ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
        ]
        self._channels: dict[str, grpc.aio.Channel] = {}
        chain = list(interceptors) or None
        for which in ("scheduler", "registry", "results"):
            addr = settings.peer(which)
            if addr not in self._channels:
                self._channels[addr] = grpc.aio.insecure_channel(addr, options=opts, interceptors=chain)
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self._channels[settings.peer("scheduler")])
        self.registry = worker_pb2_grpc.RegistryStub(self._channels[settings.peer("registry")])
        self.results = results_pb2_grpc.ResultsStub(self._channels[settings.peer("results")])

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
