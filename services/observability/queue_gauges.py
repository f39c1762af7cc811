"""Gauges of the registry's queues, read from Redis every `interval` seconds by one background task:

    tasktide.queue.depth              tasktide_queue_depth{queue}               ready tasks
    tasktide.queue.leased             tasktide_queue_leased{queue}              tasks leased to workers
    tasktide.queue.dead_letters       tasktide_queue_dead_letters{queue}        tasks in the dead-letter set
    tasktide.queue.oldest_wait        tasktide_queue_oldest_wait_seconds{queue} how long the longest-waiting
                                                                                ready task has waited (0 if none)
    tasktide.workers.online           tasktide_workers_online                   worker sessions

Scrapes read the last snapshot (taken off the event loop's hot path); any replica can serve them,
as they describe shared state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from redis.asyncio import Redis

from tasktide_services.worker import keys
from tasktide_services.worker.store import RegistryStore
from tasktide_services.worker.waiting import oldest_ready_ms

log = logging.getLogger("tasktide.metrics")


class QueueGauges:
    def __init__(self, redis: Redis, interval: float) -> None:
        self.redis = redis
        self.store = RegistryStore(redis)
        self.interval = interval
        self.depth: dict[str, int] = {}
        self.leased: dict[str, int] = {}
        self.dead: dict[str, int] = {}
        self.oldest_wait: dict[str, float] = {}
        self.workers = 0

    async def refresh(self) -> None:
        stats = await self.store.stats()
        now = time.time() * 1000
        oldest: dict[str, float] = {}
        for s in stats:
            since = await oldest_ready_ms(self.redis, s.queue) if s.ready else None
            oldest[s.queue] = max(now - since, 0.0) / 1000 if since is not None else 0.0
        self.depth = {s.queue: s.ready for s in stats}
        self.leased = {s.queue: s.leased for s in stats}
        self.dead = {s.queue: s.dead for s in stats}
        self.oldest_wait = oldest
        self.workers = int(await self.redis.hlen(keys.WORKERS))

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the last snapshot and try again
                log.exception("reading queue gauges failed")
            await asyncio.sleep(self.interval)

    def _per_queue(self, read: Callable[[], dict[str, int] | dict[str, float]]) -> Callable[..., Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, {"queue": q}) for q, v in read().items()]

        return callback

    def register(self, meter: Meter) -> None:
        meter.create_observable_gauge(
            "tasktide.queue.depth", [self._per_queue(lambda: self.depth)], "{task}", "Ready tasks in the queue"
        )
        meter.create_observable_gauge(
            "tasktide.queue.leased", [self._per_queue(lambda: self.leased)], "{task}", "Tasks leased to workers"
        )
        meter.create_observable_gauge(
            "tasktide.queue.dead_letters",
            [self._per_queue(lambda: self.dead)],
            "{task}",
            "Tasks in the queue's dead-letter set",
        )
        meter.create_observable_gauge(
            "tasktide.queue.oldest_wait",
            [self._per_queue(lambda: self.oldest_wait)],
            "s",
            "How long the longest-waiting ready task has waited",
        )
        meter.create_observable_gauge(
            "tasktide.workers.online",
            [lambda options: [Observation(self.workers)]],
            "{worker}",
            "Worker sessions connected to the registry",
        )
