"""Bounds on what the registry keeps in Redis, applied by the reaper every HOUSEKEEPING_SECONDS.

- Dead letters: per queue, those older than `dead_max_age` seconds are forgotten, then the oldest
  beyond `dead_max` (settings TASKTIDE_DEAD_MAX_AGE, TASKTIDE_DEAD_MAX). Their results stay in the
  results service until the result expiry.
- Queues: a queue that no connected worker consumed at two passes in a row and that holds nothing
  at the second (nothing ready, leased, dead or retrying, not paused) leaves the queue registry
  (tt:w:queues) and its leftover keys are deleted (not its fence counter: tokens are never
  reused). The next submission to it, or a worker consuming it, registers it again.
- Worker entries: each session refreshes its entry (service.py, WORKER_REFRESH_SECONDS); an entry
  not refreshed for WORKER_STALE_SECONDS belonged to a registry replica that died and is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.asyncio.client import Pipeline

from tasktide_services.common import events, partitions
from tasktide_services.common.settings import ServerSettings
from tasktide_services.worker import keys
from tasktide_services.worker.passes import per_queue
from tasktide_services.worker.store import RegistryStore

log = logging.getLogger("tasktide.registry.housekeeping")

HOUSEKEEPING_SECONDS = 30.0
WORKER_REFRESH_SECONDS = 10.0
WORKER_STALE_SECONDS = 60.0
TRIM_LIMIT = 1000  # dead letters forgotten per queue and pass, at most


@dataclass
class Housekeeping:
    store: RegistryStore
    settings: ServerSettings
    unused: set[str] = field(default_factory=set)  # queues no worker consumed at the last pass
    next_at: float = 0.0  # loop time of the next pass

    async def maybe_run(self) -> None:
        """A pass when HOUSEKEEPING_SECONDS have gone by since the last one."""
        loop = asyncio.get_running_loop()
        if loop.time() < self.next_at:
            return
        self.next_at = loop.time() + HOUSEKEEPING_SECONDS
        await self.run_once()

    async def run_once(self, now_ms: int | None = None) -> None:
        """One pass; a part that fails is logged and the others still run."""
        now = now_ms if now_ms is not None else events.now_ms()
        for name, part in (("workers", self._workers), ("dead letters", self._dead), ("queues", self._queues)):
            try:
                await part(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.warning("housekeeping of %s failed", name, exc_info=True)

    async def _workers(self, now: int) -> None:
        dropped = await self.store.drop_stale_workers(now - int(WORKER_STALE_SECONDS * 1000))
        if dropped:
            log.info("dropped %d stale worker entries", dropped)

    async def _dead(self, now: int) -> None:
        before = now - int(self.settings.dead_max_age * 1000)
        queues = await self.store.queues()
        argv = [before, self.settings.dead_max, TRIM_LIMIT]

        def build(pipe: Pipeline, q: str) -> None:
            self.store.scripts["trim_dead"](keys.queue_keys(q), argv, client=pipe)

        for q, (forgotten,) in zip(queues, await per_queue(self.store, queues, build, 1), strict=True):
            if isinstance(forgotten, Exception):  # that queue alone; the next pass tries again
                log.warning("queue %s: trimming dead letters failed: %s", q, forgotten)
            elif forgotten:
                log.info(
                    "queue %s: forgot %d dead letters (older than %.0f s or beyond %d)",
                    q,
                    forgotten,
                    self.settings.dead_max_age,
                    self.settings.dead_max,
                )

    async def _queues(self, now: int) -> None:
        consumed = {q for w in await self.store.workers() for q in w.queues}
        unused = {q for q in await self.store.queues() if partitions.base(q) not in consumed}  # NAME#k: NAME's
        for q in unused & self.unused:
            if await self.store.forget_if_idle(q):
                unused.discard(q)
                log.info("queue %s is empty and unused: dropped from the queue registry", q)
        self.unused = unused
