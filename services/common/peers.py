"""Calls across ownership lines (scheduler -> registry, registry -> results, ...): gRPC stubs, or,
for a service hosted in the same process, its servicer called directly (see `Peers.bind`).

Each peer is typed by the calls other services make to it (`SchedulerPeer`, `WorkflowsPeer`,
`RegistryPeer`, `ResultsPeer`); a gRPC stub and a servicer of this process both serve them. The
results service and the registry of this process also lend their stores' writes to a caller's
pipeline (`local_results`, `local_registry`), so a write that crosses the line can share one round
trip: the owner's store still builds its own commands with its own scripts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeAlias, TypeVar

import grpc
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide._channels import target
from tasktide._settings import KEEPALIVE_OPTIONS, RECONNECT_OPTIONS
from tasktide.v1 import (
    results_pb2,
    results_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    task_pb2,
    worker_pb2,
    worker_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from tasktide_services.common.auth import as_service
from tasktide_services.common.lua import Script
from tasktide_services.common.settings import ServerSettings

# Seconds a call to another service may take before it ends DEADLINE_EXCEEDED (every call over gRPC
# that names no deadline of its own). A frozen peer (SIGSTOP, a host that stopped answering) is
# otherwise waited on until the channel's keepalive gives up on it; a caller that fails tries again,
# on another replica where there is one: every peer call is safe to repeat (a result is kept once,
# a lease ends once, a retry or a completion reported twice is recognised).
CALL_TIMEOUT = 10.0

# A handler's call context: a grpc.aio.ServicerContext over gRPC, None when a peer of this process
# calls it (no handler reached that way reads its context).
Ctx: TypeAlias = object
T = TypeVar("T")


# The calls other services make, as a stub or a local servicer serves them.


class SchedulerPeer(Protocol):
    def Retry(self, request: scheduler_pb2.RetryRequest, /) -> Awaitable[scheduler_pb2.RetryResponse]: ...
    def Cancel(self, request: scheduler_pb2.CancelRequest, /) -> Awaitable[scheduler_pb2.CancelResponse]: ...


class WorkflowsPeer(Protocol):
    def Completed(self, request: workflow_pb2.CompletedRequest, /) -> Awaitable[workflow_pb2.CompletedResponse]: ...


class RegistryPeer(Protocol):
    def Enqueue(self, request: worker_pb2.EnqueueRequest, /) -> Awaitable[worker_pb2.EnqueueResponse]: ...
    def Find(self, request: worker_pb2.FindRequest, /) -> Awaitable[worker_pb2.FindResponse]: ...
    def Revoke(self, request: worker_pb2.RevokeRequest, /) -> Awaitable[worker_pb2.RevokeResponse]: ...
    def Locate(self, request: worker_pb2.LocateRequest, /) -> Awaitable[worker_pb2.LocateResponse]: ...


class ResultsPeer(Protocol):
    def Record(self, request: results_pb2.RecordRequest, /) -> Awaitable[results_pb2.RecordResponse]: ...
    def Get(self, request: results_pb2.GetRequest, /) -> Awaitable[results_pb2.GetResponse]: ...


# What a servicer of this process offers to the others (its handlers, and its store's writes).


class StoreOnPipeline(Protocol):
    """A store whose writes can join a caller's pipeline."""

    @property
    def redis(self) -> Redis: ...
    @property
    def scripts(self) -> Mapping[str, Script]: ...


class ResultsWrites(StoreOnPipeline, Protocol):
    def build_record(self, pipe: Pipeline, events: list[task_pb2.TaskEvent], /) -> int: ...
    def recorded(self, events: list[task_pb2.TaskEvent], replies: list[object], /) -> None: ...


class Handover(Protocol):
    """Runnable tasks enqueued on a caller's pipeline (and leased to a local session with credit):
    `build`, then `finish_now` or else `finish` with the pipeline's replies, or `abandon` when it
    failed."""

    def build(self, pipe: Pipeline, /) -> None: ...
    def finish_now(self, replies: list[object], /) -> bool: ...
    async def finish(self, replies: list[object], /) -> None: ...
    def abandon(self) -> None: ...


class SchedulerServicer(Protocol):
    async def Retry(self, req: scheduler_pb2.RetryRequest, ctx: Ctx, /) -> scheduler_pb2.RetryResponse: ...
    async def Cancel(self, req: scheduler_pb2.CancelRequest, ctx: Ctx, /) -> scheduler_pb2.CancelResponse: ...


class WorkflowsServicer(Protocol):
    async def Completed(self, req: workflow_pb2.CompletedRequest, ctx: Ctx, /) -> workflow_pb2.CompletedResponse: ...


class RegistryServicer(Protocol):
    @property
    def store(self) -> StoreOnPipeline: ...
    def handover(self, tasks: list[task_pb2.Task], /) -> Handover: ...
    async def Enqueue(self, req: worker_pb2.EnqueueRequest, ctx: Ctx, /) -> worker_pb2.EnqueueResponse: ...
    async def Find(self, req: worker_pb2.FindRequest, ctx: Ctx, /) -> worker_pb2.FindResponse: ...
    async def Revoke(self, req: worker_pb2.RevokeRequest, ctx: Ctx, /) -> worker_pb2.RevokeResponse: ...
    async def Locate(self, req: worker_pb2.LocateRequest, ctx: Ctx, /) -> worker_pb2.LocateResponse: ...


class ResultsServicer(Protocol):
    @property
    def store(self) -> ResultsWrites: ...
    async def Record(self, req: results_pb2.RecordRequest, ctx: Ctx, /) -> results_pb2.RecordResponse: ...
    async def Get(self, req: results_pb2.GetRequest, ctx: Ctx, /) -> results_pb2.GetResponse: ...


class DefaultDeadline(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Gives a call that has no deadline `seconds` of them."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, object], Awaitable[object]],
        details: grpc.aio.ClientCallDetails,
        request: object,
    ) -> object:
        if details.timeout is None:
            details = details._replace(timeout=self._seconds)
        return await continuation(details, request)


class Peers:
    scheduler: SchedulerPeer
    workflows: WorkflowsPeer  # hosted with the scheduler
    registry: RegistryPeer
    results: ResultsPeer

    def __init__(self, settings: ServerSettings, interceptors: Sequence[object] = ()) -> None:
        """`settings.address` is this server's own (its bound port): a peer at that address is
        served by the servicer bound here, once `bind` is called, instead of over gRPC."""
        opts = [
            ("grpc.max_send_message_length", settings.limits.max_message_bytes),
            ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
            *RECONNECT_OPTIONS,  # the clients' reconnection and keepalive policies (tasktide._settings)
            *KEEPALIVE_OPTIONS,
            # Pinged even while no call is open, so a frozen replica is found before a call is sent
            # to it and waits out CALL_TIMEOUT (round robin then skips it until it answers again).
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        self._settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        chain = [DefaultDeadline(CALL_TIMEOUT), *interceptors]
        tls = bool(settings.tls.enabled or settings.tls.ca)
        for which in ("scheduler", "registry", "results"):
            addr = settings.peer(which)
            if addr not in self._channels:  # one address or several replicas, round robin
                where = target(addr, tls)
                both: list[tuple[str, object]] = [*opts, *where.options]
                self._channels[addr] = (
                    grpc.aio.secure_channel(
                        where.target, settings.tls.channel_credentials(), options=both, interceptors=chain
                    )
                    if tls
                    else grpc.aio.insecure_channel(where.target, options=both, interceptors=chain)
                )
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self._channels[settings.peer("scheduler")])
        self.workflows = workflow_pb2_grpc.WorkflowsStub(self._channels[settings.peer("scheduler")])
        self.registry = worker_pb2_grpc.RegistryStub(self._channels[settings.peer("registry")])
        self.results = results_pb2_grpc.ResultsStub(self._channels[settings.peer("results")])
        self._registry: RegistryServicer | None = None
        self._results: ResultsServicer | None = None

    def _here(self, which: str) -> bool:
        return self._settings.peer(which) == self._settings.address

    def bind(
        self,
        *,
        scheduler: SchedulerServicer | None = None,
        workflows: WorkflowsServicer | None = None,
        registry: RegistryServicer | None = None,
        results: ResultsServicer | None = None,
    ) -> None:
        """Reach the given services, hosted in this process, through their servicers instead of a
        gRPC hop to ourselves, when that peer's address is this server's. The owner's handler still
        does the work (validation, its scripts); only the loopback call and its serialization are
        skipped."""
        if scheduler is not None and self._here("scheduler"):
            self.scheduler = _LocalScheduler(scheduler)
        if workflows is not None and self._here("scheduler"):
            self.workflows = _LocalWorkflows(workflows)
        if registry is not None and self._here("registry"):
            self.registry, self._registry = _LocalRegistry(registry), registry
        if results is not None and self._here("results"):
            self.results, self._results = _LocalResults(results), results

    def local_registry(self, redis: Redis) -> RegistryServicer | None:
        """The registry when it is hosted in this process on the connection `redis`, else None."""
        return self._registry if self._registry is not None and self._registry.store.redis is redis else None

    def local_results(self, redis: Redis) -> ResultsWrites | None:
        """The results service's store when it is hosted in this process on the connection `redis`
        (its writes can then share the caller's pipeline), else None."""
        store = self._results.store if self._results is not None else None
        return store if store is not None and store.redis is redis else None

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()


# Stub look-alikes that await a local servicer's handler with the request (no call context), as the
# service caller whoever made the call that led to it (auth.as_service).


async def _as_service(call: Awaitable[T]) -> T:
    with as_service():
        return await call


class _LocalScheduler:
    def __init__(self, servicer: SchedulerServicer) -> None:
        self._s = servicer

    async def Retry(self, request: scheduler_pb2.RetryRequest, /) -> scheduler_pb2.RetryResponse:
        return await _as_service(self._s.Retry(request, None))

    async def Cancel(self, request: scheduler_pb2.CancelRequest, /) -> scheduler_pb2.CancelResponse:
        return await _as_service(self._s.Cancel(request, None))


class _LocalWorkflows:
    def __init__(self, servicer: WorkflowsServicer) -> None:
        self._s = servicer

    async def Completed(self, request: workflow_pb2.CompletedRequest, /) -> workflow_pb2.CompletedResponse:
        return await _as_service(self._s.Completed(request, None))


class _LocalRegistry:
    def __init__(self, servicer: RegistryServicer) -> None:
        self._s = servicer

    async def Enqueue(self, request: worker_pb2.EnqueueRequest, /) -> worker_pb2.EnqueueResponse:
        return await _as_service(self._s.Enqueue(request, None))

    async def Find(self, request: worker_pb2.FindRequest, /) -> worker_pb2.FindResponse:
        return await _as_service(self._s.Find(request, None))

    async def Revoke(self, request: worker_pb2.RevokeRequest, /) -> worker_pb2.RevokeResponse:
        return await _as_service(self._s.Revoke(request, None))

    async def Locate(self, request: worker_pb2.LocateRequest, /) -> worker_pb2.LocateResponse:
        return await _as_service(self._s.Locate(request, None))


class _LocalResults:
    def __init__(self, servicer: ResultsServicer) -> None:
        self._s = servicer

    async def Record(self, request: results_pb2.RecordRequest, /) -> results_pb2.RecordResponse:
        return await _as_service(self._s.Record(request, None))

    async def Get(self, request: results_pb2.GetRequest, /) -> results_pb2.GetResponse:
        return await _as_service(self._s.Get(request, None))
