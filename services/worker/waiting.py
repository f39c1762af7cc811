"""How long tasks have waited in the registry's ready queues (read-only; for metrics).

No key is added for this: a ready task's wait is derived from its record in tt:w:{q}:task. A task
became runnable at max(created_ms, spec.eta_ms): the scheduler sets eta_ms when a countdown, ETA or
retry backoff held it back, and created_ms otherwise. (A task put back after its worker was lost
counts from that same moment, so its wait includes the lost attempt.)

The ready set orders tasks by priority band, then arrival, so the longest-waiting task of each band
is that band's first entry: the oldest waiting task of a queue is found by looking at the first
entry of each non-empty band, one ZRANGEBYSCORE per band, never by scanning the set.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from tasktide.v1 import task_pb2
from tasktide_services.worker import keys

MAX_BANDS = 32  # bands looked at per queue; a queue rarely uses more than a few priorities


def ready_since_ms(task: task_pb2.Task) -> int:
    """Unix ms when the task became runnable."""
    return max(task.created_ms, task.spec.eta_ms)


async def oldest_ready_ms(redis: Redis, queue: str) -> int | None:
    """Unix ms since which the longest-waiting ready task of `queue` has been runnable, or None."""
    k = keys.queue_keys(queue)
    ids: list[bytes] = []
    low: float | str = "-inf"
    for _ in range(MAX_BANDS):
        first = await redis.zrangebyscore(k.ready, low, "+inf", start=0, num=1, withscores=True)
        if not first:
            break
        task_id, score = cast(tuple[bytes, float], first[0])
        ids.append(task_id)
        low = keys.band_start(keys.score_band(score) + 1)
    if not ids:
        return None
    values = await redis.hmget(k.task, ids)
    times = [ready_since_ms(keys.task_of(v)) for v in values if v]
    return min(times) if times else None
