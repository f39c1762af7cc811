"""The background loops of a service: run a step again and again, never dying of one failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tasktide.loop")


async def run_forever(name: str, step: Callable[[], Awaitable[int]], pause: float, full: int = 0) -> None:
    """Run `step` until cancelled, sleeping `pause` seconds after each one that handled fewer than
    `full` items (a full batch goes again at once). A failed step is logged; what it held stays
    in Redis for the next one."""
    while True:
        try:
            handled = await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep going: the next step retries from Redis
            log.exception("%s failed", name)
            handled = 0
        if not full or handled < full:
            await asyncio.sleep(pause)
