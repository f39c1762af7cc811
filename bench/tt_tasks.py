"""The tasktide tasks of the benchmark; workers import this as bench.tt_tasks:app.

The address comes from TASKTIDE_ADDRESS, read when the App first needs a client.
"""

from __future__ import annotations

import tasktide

app = tasktide.App("bench")


@app.task
def noop() -> None:
    return None


@app.task
def total(values: list[int]) -> int:
    return sum(values)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(max_retries=1)
def flaky(x: int, backoff: float = 0.2) -> int:
    """Fails its first attempt and asks for a retry after `backoff` seconds (the footprint of a retry)."""
    ctx = tasktide.current_task()
    if ctx.attempt == 0:
        ctx.retry(countdown=backoff)
    return x
