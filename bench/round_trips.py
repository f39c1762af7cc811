"""Round trips (`add.delay(i, i).get()`) timed one after another, and their percentiles: the same
code for every system."""

from __future__ import annotations

import time
from typing import Any


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    xs = sorted(samples_s)

    def rank(p: float) -> float:
        i = min(len(xs) - 1, max(0, int(round(p * len(xs) + 0.5)) - 1))
        return xs[i] * 1000.0

    return {"p50": rank(0.50), "p99": rank(0.99)}


def round_trips(add: Any, n: int, system: str) -> dict[str, float]:
    """`add.delay(i, i).get()` n times in a row after 10 unmeasured ones; p50 and p99. The same
    code for every system: `add` is its task, whose handle has `get(timeout=)`."""
    for i in range(10):  # warm-up, not measured
        add.delay(i, i).get(timeout=30)
    return percentiles(timed_round_trips(add, n, system, timeout=30))


def timed_round_trips(add: Any, n: int, system: str, timeout: float) -> list[float]:
    """`add.delay(i, i).get()` for i in range(n): each round trip's seconds (a wrong sum raises)."""
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        value = add.delay(i, i).get(timeout=timeout)
        samples.append(time.perf_counter() - t0)
        if value != 2 * i:
            raise RuntimeError(f"{system}: add({i}, {i}) returned {value!r}")
    return samples
