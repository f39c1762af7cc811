"""Tasks of the guarantee tests, importable by worker processes as tests.guarantee_tasks:app.

They leave traces in files (ticks, pids, start times) so a test can tell from outside the worker
whether work goes on, where it ran and when it started."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tasktide

app = tasktide.App("g")


@app.task
def tick(path: str, seconds: float, stubborn: bool = False) -> str:
    """Writes its pid, then appends a line every 10 ms for `seconds`. It never checks for a cancel;
    a stubborn one also swallows the interruptions raised in it (the soft limit, a cancel signal
    in a child process), so only a kill ends it early."""
    Path(path + ".pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(path, "a") as f:
                f.write("t\n")
            time.sleep(0.01)
        except (tasktide.SoftTimeLimitExceeded, tasktide.CancelRequested):
            if not stubborn:
                raise
    return "ticked"


@app.task
async def async_tick(path: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(path, "a") as f:
            f.write("t\n")
        await asyncio.sleep(0.01)
    return "ticked"


@app.task
def label(path: str, text: str) -> str:
    """Appends `text` to a file: the order of execution."""
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


@app.task(rate_limit="5/s")
def limited(path: str, hold: float = 0.0) -> int:
    """Appends "PID START" to a file (which worker process started it, and when), then keeps its
    slot for `hold` seconds."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {time.time()}\n")
    time.sleep(hold)
    return os.getpid()


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def total(values: list[int]) -> int:
    return sum(values)


@app.task(max_retries=1, retry_backoff=0.01)
def always_fails(message: str) -> None:
    raise RuntimeError(message)
