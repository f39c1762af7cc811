"""Sleeping until the next due time of a sorted set, woken early by this process.

An idle loop that reads a sorted set of due times (the delayed tasks, the schedules' next
occurrences) does not poll it at a fixed short tick: each step reads the earliest time still to
come along with what is due, and the loop sleeps until then, for at most `longest` seconds. What
this process adds with an earlier time wakes it at once through `notify`; what another process
adds (another replica, a client writing to Redis directly) is seen at the next step, so at most
`longest` seconds late.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable


def wall_ms() -> int:
    return int(time.time() * 1000)


class Alarm:
    """The earliest time (Unix ms) this process knows something becomes due, and an event that
    wakes the sleeper when that time moves earlier."""

    def __init__(self, clock: Callable[[], int] = wall_ms) -> None:
        self._clock = clock
        self._hint = math.inf
        self._woken = asyncio.Event()

    def notify(self, at_ms: float) -> None:
        """Something becomes due at `at_ms` (0 or less: at once)."""
        if at_ms < self._hint:
            self._hint = at_ms
            self._woken.set()

    async def sleep_until(self, at_ms: float, longest: float, earliest: float = 0) -> None:
        """Sleep until `at_ms` (math.inf: nothing known), at most `longest` seconds, or until a
        time notified since is reached, but not past `earliest` (Unix ms: a loop's steps at most
        so often, so that tasks due close together are taken in one step). The hints reached are
        then forgotten."""
        end = min(at_ms, self._clock() + longest * 1000)
        while True:
            wait = (max(min(end, self._hint), earliest) - self._clock()) / 1000
            if wait <= 0:
                break
            self._woken.clear()
            try:
                await asyncio.wait_for(self._woken.wait(), wait)
            except TimeoutError:
                pass
        if self._hint <= self._clock():
            self._hint = math.inf
