"""How many of the worker's consumers may take assignments at a time, changed by a Resize.

A consumer holds a permit while it waits for an assignment and runs it. `resize` lets more take
one at once, or fewer once theirs are given back; consumers idle in the queue's get are woken with
RECHECK entries (_slots.py) so that they give theirs up.
"""

from __future__ import annotations

import asyncio


class Permits:
    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.holding = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> None:
        while self.holding >= self.allowed:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        self.holding += 1

    def release(self) -> None:
        self.holding -= 1
        self._wake()

    def resize(self, allowed: int) -> None:
        self.allowed = allowed
        self._wake()

    def _wake(self) -> None:
        """Every waiter looks again (they are few: at most the largest size the pool had)."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
