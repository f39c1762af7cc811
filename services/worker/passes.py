"""A pass over every queue in few round trips: the reaper and housekeeping look at each queue once
per pass, and with many queues one round trip per queue made a pass take seconds.

`per_queue` sends the commands of CHUNK queues per pipeline and gives back each queue's replies,
an exception in place of a reply for the queue it concerns alone (a poison key fails its queue, not
the pass). A script Redis lost (NOSCRIPT: it did not run) is loaded, and its queues asked again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from tasktide_services.worker.store import RegistryStore

CHUNK = 500  # queues per round trip


async def per_queue(
    store: RegistryStore, queues: list[str], build: Callable[[Pipeline, str], None], per: int
) -> list[list[Any]]:
    """For each queue, in order, the `per` replies of the commands `build` added for it."""
    out: dict[str, list[Any]] = {}
    for start in range(0, len(queues), CHUNK):
        todo = queues[start : start + CHUNK]
        for attempt in (1, 2):
            async with store.redis.pipeline(transaction=False) as pipe:
                for q in todo:
                    build(pipe, q)
                replies = await pipe.execute(raise_on_error=False)
            lost = []
            for i, q in enumerate(todo):
                out[q] = replies[per * i : per * (i + 1)]
                if any(isinstance(r, NoScriptError) for r in out[q]):
                    lost.append(q)
            if not lost or attempt == 2:
                break
            for script in store.scripts.values():
                await store.redis.script_load(script.source)
            todo = lost
    return [out[q] for q in queues]
