"""The background loops of a service: run a step again and again, never dying of one failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tasktide.loop")

FAILING_PAUSE_MAX = 1.0  # seconds between attempts of a loop whose steps keep failing


def backoff(failures: int, first: float, most: float) -> float:
    """Seconds to pause after `failures` (1 or more) failed attempts in a row: `first`, doubled per
    further failure, up to `most`. The one rule of the services' retries after a failed Redis call."""
    return float(min(first * 2 ** (failures - 1), most))


async def run_forever(name: str, step: Callable[[], Awaitable[int]], pause: float, full: int = 0) -> None:
    """Run `step` until cancelled, sleeping `pause` seconds after each one that handled fewer than
    `full` items (a full batch goes again at once). A failed step is logged; what it held stays
    in Redis for the next one. While steps fail in a row (Redis away), the pause doubles up to
    FAILING_PAUSE_MAX and only the first failure's traceback is logged."""
    failures = 0
    while True:
        try:
            handled = await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep going: the next step retries from Redis
            failures += 1
            wait = backoff(failures + 1, pause, max(pause, FAILING_PAUSE_MAX))
            log.error("%s failed (%d in a row); again in %.2f s", name, failures, wait, exc_info=failures == 1)
            await asyncio.sleep(wait)
            continue
        if failures:
            log.info("%s works again after %d failures", name, failures)
            failures = 0
        if not full or handled < full:
            await asyncio.sleep(pause)
