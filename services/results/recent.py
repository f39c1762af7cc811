"""Final results this process has just written, kept a short while for its own followers.

A Follow stream, Wait call or final-only Watch served by the process that recorded a task's final
result answers with the result as written (the `record` script returns it) instead of reading it
back (store.py). A result is forgotten when another process names its task on the results channel
(`ResultsStore.changed_elsewhere`: a dead task requeued there), so it is handed out stale only
until that notice arrives. What is kept is bounded: for SECONDS at most, COUNT results and BYTES of
them together, the oldest dropped first; a result over VALUE_BYTES is not kept (its followers read
it from Redis).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

SECONDS = 2.0
COUNT = 4096
BYTES = 8 * 1024 * 1024
VALUE_BYTES = 64 * 1024

V = TypeVar("V")


class RecentFinals(Generic[V]):
    def __init__(
        self, seconds: float = SECONDS, count: int = COUNT, size: int = BYTES, value_size: int = VALUE_BYTES
    ) -> None:
        self.seconds, self.count, self.size, self.value_size = seconds, count, size, value_size
        self._kept: OrderedDict[str, tuple[float, V, int]] = OrderedDict()  # key -> (when, value, bytes)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def bytes(self) -> int:
        """The sizes of what is kept, together."""
        return self._bytes

    def put(self, key: str, value: V, size: int) -> None:
        """Keeps `value` (of `size` bytes) under `key`, unless it is over the size of one value."""
        self.drop(key)
        if size > self.value_size:
            return
        self._kept[key] = (time.monotonic(), value, size)
        self._bytes += size
        while len(self._kept) > self.count or self._bytes > self.size:
            self._drop_oldest()

    def drop(self, key: str) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._bytes -= kept[2]

    def get(self, keys: list[str]) -> dict[str, V]:
        """What is kept under `keys`, written less than `seconds` ago."""
        oldest = time.monotonic() - self.seconds
        while self._kept and next(iter(self._kept.values()))[0] < oldest:
            self._drop_oldest()
        return {key: kept[1] for key in keys if (kept := self._kept.get(key)) is not None}

    def _drop_oldest(self) -> None:
        _, (_, _, size) = self._kept.popitem(last=False)
        self._bytes -= size
