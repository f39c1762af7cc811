"""Assembling services on a grpc.aio server: the chosen services, health checking and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis

from tasktide._settings import PING_MIN_MS
from tasktide.v1 import results_pb2, scheduler_pb2, worker_pb2, workflow_pb2
from tasktide_services.common.auth import Authenticator, AuthInterceptor, Revocations, ServiceToken, read_key
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.notify import Notifier
from tasktide_services.common.partitions import Partitions
from tasktide_services.common.peers import Peers
from tasktide_services.common.redis_cluster_url import is_cluster_url
from tasktide_services.common.roles import OPEN_PREFIXES, allowed_roles
from tasktide_services.common.rpc import add_service
from tasktide_services.common.settings import ServerSettings
from tasktide_services.results import keys as results_keys
from tasktide_services.results.service import ResultsService
from tasktide_services.results.store import ResultsStore
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.pump import run_pump
from tasktide_services.scheduler.schedules import run_schedules
from tasktide_services.scheduler.service import SchedulerService
from tasktide_services.scheduler.store import SchedulerStore
from tasktide_services.scheduler.workflows import WorkflowService
from tasktide_services.scheduler.writing import writer_for
from tasktide_services.worker import keda
from tasktide_services.worker import keys as registry_keys
from tasktide_services.worker.reaper import run_reaper
from tasktide_services.worker.service import RegistryService
from tasktide_services.worker.store import RegistryStore

log = logging.getLogger("tasktide.server")

ALL = ("scheduler", "registry", "results")

WORKFLOWS = workflow_pb2.DESCRIPTOR.services_by_name["Workflows"]  # hosted with the scheduler
_DESCRIPTORS = {
    "scheduler": scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    "registry": worker_pb2.DESCRIPTOR.services_by_name["Registry"],
    "results": results_pb2.DESCRIPTOR.services_by_name["Results"],
}


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    address: str = ""  # where it listens: HOST:PORT with the port bound, or the unix:PATH it was given
    background: list[asyncio.Task[None]] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
        for t in self.background:
            t.cancel()
        for t in self.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()


async def start(
    settings: ServerSettings, redis: Redis, which: tuple[str, ...] = ALL, hooks: ServiceHooks | None = None
) -> Running:
    """Start the named services on settings.address; returns once the port is bound.
    `hooks` (tracing, metrics) are given to every service; none by default."""
    hooks = hooks or ServiceHooks()
    opts = [
        ("grpc.max_send_message_length", settings.limits.max_message_bytes),
        ("grpc.max_receive_message_length", settings.limits.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # Callers ping their calls every KEEPALIVE_TIME_MS to learn of a frozen server; accept that.
        ("grpc.http2.min_ping_interval_without_data_ms", PING_MIN_MS),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    interceptors = list(hooks.server_interceptors())
    client_interceptors = list(hooks.client_interceptors())
    if settings.auth_key:
        key = read_key(settings.auth_key)
        authenticator = Authenticator(key, Revocations(settings.auth_revoked))
        # First: a call without a valid token is refused before any other interceptor sees it.
        interceptors.insert(0, AuthInterceptor(authenticator, allowed_roles(), OPEN_PREFIXES))
        client_interceptors.extend(ServiceToken(key).interceptors())
    server = grpc.aio.server(options=opts, interceptors=interceptors or None)
    if settings.tls.enabled:
        port = server.add_secure_port(settings.address, settings.tls.server_credentials())
    else:
        port = server.add_insecure_port(settings.address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.address}")
    if not settings.address.startswith("unix:"):  # HOST:0 becomes the port bound
        host = settings.address.rsplit(":", 1)[0]
        settings = replace(settings, address=f"{host}:{port}")
    peers = Peers(settings, client_interceptors)
    running = Running(server, port, settings.address)
    running.closers.append(peers.close)
    jobs: list[Callable[[], Coroutine[Any, Any, None]]] = []  # started once every service is bound
    # Hops between services of this process skip gRPC, traced or not (Peers.bind): the task's spans
    # come from the hooks, and a direct call keeps the caller's trace context (measured: keeping the
    # loopback hops for the sake of their gRPC spans cost a quarter of the throughput).
    if "registry" in which:
        rstore = RegistryStore(redis)
        await rstore.prepare()
        rnotify = Notifier(redis, registry_keys.NOTIFY)
        await rnotify.start()
        running.closers.append(rnotify.stop)
        registry = RegistryService(rstore, rnotify, peers, settings, hooks)
        add_service(server, _DESCRIPTORS["registry"], registry)
        peers.bind(registry=registry)
        if settings.serves_external_scaler():
            # KEDA's external scaler: workers on Kubernetes scale by queue depth (worker/keda.py).
            scaler = keda.ExternalScalerService(redis, rnotify, settings.limits, partitions=registry.partitions)
            add_service(server, keda.DESCRIPTOR, scaler)
        cancels = Notifier(redis, registry_keys.CANCEL, on_message=registry.on_cancel)
        await cancels.start()
        running.closers.append(cancels.stop)
        drains = Notifier(redis, registry_keys.DRAIN, on_message=registry.on_drain)
        await drains.start()
        running.closers.append(drains.stop)
        resizes = Notifier(redis, registry_keys.RESIZE, on_message=registry.on_resize)
        await resizes.start()
        running.closers.append(resizes.stop)
        jobs.append(partial(run_reaper, rstore, peers, settings, hooks))
    if "results" in which:
        one_node = not is_cluster_url(settings.redis_url)
        nstore = ResultsStore(redis, settings.result_expires, settings.index, settings.timeline_expires, one_node)
        await nstore.prepare()
        nnotify = Notifier(redis, results_keys.EVENTS, origin=nstore.origin)
        nstore.on_final = nnotify.wake_waiters  # a Wait here hears of a result recorded here at once
        nnotify.on_others = nstore.changed_elsewhere  # what it keeps of its writes, changed elsewhere
        await nnotify.start()
        running.closers.append(nnotify.stop)
        results = ResultsService(nstore, nnotify, settings)
        add_service(server, _DESCRIPTORS["results"], results)
        peers.bind(results=results)
    if "scheduler" in which:  # last: its write mode depends on the services bound above
        sstore = SchedulerStore(redis, settings.result_expires)
        await sstore.prepare()
        admission = Admission(
            sstore, writer_for(sstore, peers), settings.limits, hooks, Partitions.from_pairs(settings.queue_partitions)
        )
        scheduler = SchedulerService(sstore, admission, peers, settings)
        add_service(server, _DESCRIPTORS["scheduler"], scheduler)
        workflows = WorkflowService(sstore, admission, peers, settings.limits)
        add_service(server, WORKFLOWS, workflows)
        peers.bind(scheduler=scheduler, workflows=workflows)
        jobs.append(partial(run_pump, sstore, admission, peers, settings.tick_seconds))
        jobs.append(partial(run_schedules, sstore, admission, settings.tick_seconds))
    running.background += [asyncio.create_task(job()) for job in jobs]
    running.background += [asyncio.create_task(job) for job in hooks.background(which, redis)]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [_DESCRIPTORS[w].full_name for w in which]
    if "scheduler" in which:
        names.append(WORKFLOWS.full_name)
    if "registry" in which and settings.serves_external_scaler():
        names.append(keda.DESCRIPTOR.full_name)
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    await server.start()
    log.info("serving %s on %s", ", ".join(which), settings.address)
    return running
