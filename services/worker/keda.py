"""KEDA's external scaler, served by the registry: workers scale on queue depth, to zero and back.

KEDA calls it with the trigger's `metadata` of a ScaledObject (type `external` or `external-push`):

    queue             one queue or several, comma-separated (required)
    targetPerReplica  tasks one worker replica should have waiting or running (default 10)

The depth of a queue is its leased tasks plus its ready tasks, ready ones counted only while the queue
is not paused (a paused queue dispatches nothing, so more workers would not help). A scaled object is
active while the depth of its queues is above zero. Delayed tasks (held by the scheduler until due)
and dead-lettered tasks are not counted.

`StreamIsActive` sends the state at once, then each change: while inactive it wakes when a queue is
announced on the registry's notify channel (work arrived); otherwise it reads the depth every
`poll_seconds` (so a busy queue costs one read a second per stream, not one per arrival). At most
MAX_STREAMS are open at once (KEDA keeps one per trigger); one more is refused with
RESOURCE_EXHAUSTED.

The scaler answers without a token, since KEDA cannot send one: the registry serves it while no
tokens are checked, or when TASKTIDE_EXTERNAL_SCALER=1 (settings.serves_external_scaler); keep it to
the cluster with mutual TLS or a network policy then (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tasktide_services.common import validate
from tasktide_services.common.errors import InvalidArgument, ResourceExhausted
from tasktide_services.common.notify import Notifier
from tasktide_services.common.partitions import Partitions
from tasktide_services.common.settings import Limits
from tasktide_services.externalscaler import externalscaler_pb2 as pb
from tasktide_services.worker import keys

log = logging.getLogger("tasktide.keda")

Ctx: TypeAlias = grpc.aio.ServicerContext

DESCRIPTOR = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
DEFAULT_TARGET = 10.0
MAX_QUEUES = 64  # queues one trigger may name
MAX_STREAMS = 256  # StreamIsActive streams open at once in one registry


class Trigger:
    """A trigger's metadata, checked: the queues to watch and the per-replica target."""

    def __init__(self, ref: pb.ScaledObjectRef, limits: Limits) -> None:
        meta = ref.scalerMetadata
        names = [q.strip() for q in meta.get("queue", "").split(",") if q.strip()]
        if not names:
            raise InvalidArgument("scaler metadata needs `queue`: one queue name or several, comma-separated")
        if len(names) > MAX_QUEUES:
            raise InvalidArgument(f"scaler metadata `queue` names {len(names)} queues; at most {MAX_QUEUES}")
        self.queues = sorted({validate.queue_name(q, limits) for q in names})
        raw = meta.get("targetPerReplica", "").strip()
        try:
            self.target = float(raw) if raw else DEFAULT_TARGET
        except ValueError:
            raise InvalidArgument(f"scaler metadata `targetPerReplica` is not a number: {raw[:40]!r}") from None
        if not math.isfinite(self.target) or self.target <= 0:
            raise InvalidArgument(f"scaler metadata `targetPerReplica` must be above zero, not {raw[:40]!r}")

    @property
    def metric_name(self) -> str:
        """A name fit for Kubernetes' external metrics: lower case letters, digits and dashes."""
        joined = "-".join(self.queues).lower()
        return "tasktide-" + re.sub(r"[^a-z0-9-]+", "-", joined)[:200]


async def depth(redis: Redis, queues: list[str]) -> int:
    """Tasks leased or ready (in queues not paused) across `queues`, read in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for q in queues:
            k = keys.queue_keys(q)
            pipe.zcard(k.leases)
            pipe.zcard(k.ready)
            pipe.exists(k.paused)
        res = await pipe.execute()
    total = 0
    for i in range(len(queues)):
        leased, ready, paused = res[3 * i : 3 * i + 3]
        total += int(leased) + (0 if paused else int(ready))
    return total


class ExternalScalerService:
    """The servicer of `externalscaler.ExternalScaler` (registered with common/rpc.add_service)."""

    def __init__(
        self,
        redis: Redis,
        notifier: Notifier,
        limits: Limits,
        poll_seconds: float = 1.0,
        partitions: Partitions | None = None,
    ) -> None:
        self.partitions = partitions or Partitions()
        self.redis = redis
        self.notifier = notifier
        self.limits = limits
        self.poll_seconds = poll_seconds
        self._streams = 0

    async def IsActive(self, req: pb.ScaledObjectRef, context: Ctx) -> pb.IsActiveResponse:
        trigger = Trigger(req, self.limits)
        return pb.IsActiveResponse(result=await depth(self.redis, self.partitions.expand(trigger.queues)) > 0)

    async def StreamIsActive(self, req: pb.ScaledObjectRef, context: Ctx) -> AsyncIterator[pb.IsActiveResponse]:
        trigger = Trigger(req, self.limits)
        if self._streams >= MAX_STREAMS:
            raise ResourceExhausted(f"{MAX_STREAMS} scaler streams are open on this registry already")
        sub = self.notifier.subscribe(set(self.partitions.expand(trigger.queues)))
        self._streams += 1
        last: bool | None = None
        try:
            while True:
                active: bool | None
                try:
                    active = await depth(self.redis, self.partitions.expand(trigger.queues)) > 0
                except (RedisError, OSError) as exc:  # Redis away: keep the stream, read again later
                    log.warning("queue depth for %s: %s", trigger.queues, exc)
                    active = last
                if active is not None and active != last:
                    last = active
                    yield pb.IsActiveResponse(result=active)
                if last:  # arrivals change nothing while active: no read per wake-up on a busy queue
                    await asyncio.sleep(self.poll_seconds)
                    sub.take()
                else:
                    await sub.next_batch(self.poll_seconds)
        finally:
            self._streams -= 1
            self.notifier.unsubscribe(sub)

    async def GetMetricSpec(self, req: pb.ScaledObjectRef, context: Ctx) -> pb.GetMetricSpecResponse:
        trigger = Trigger(req, self.limits)
        spec = pb.MetricSpec(
            metricName=trigger.metric_name, targetSize=max(1, math.ceil(trigger.target)), targetSizeFloat=trigger.target
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(self, req: pb.GetMetricsRequest, context: Ctx) -> pb.GetMetricsResponse:
        trigger = Trigger(req.scaledObjectRef, self.limits)
        n = await depth(self.redis, self.partitions.expand(trigger.queues))
        value = pb.MetricValue(metricName=req.metricName or trigger.metric_name, metricValue=n, metricValueFloat=n)
        return pb.GetMetricsResponse(metricValues=[value])
