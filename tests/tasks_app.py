"""Tasks used by the tests, importable by worker subprocesses as tests.tasks_app:app."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tasktide

app = tasktide.App("t")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def echo(value: object) -> object:
    return value


@app.task
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x + y


@app.task
def boom(message: str) -> None:
    raise ValueError(message)


@app.task
def slow(seconds: float, marker_dir: str = "") -> str:
    """Sleeps; leaves a file per start in marker_dir, so tests can count executions."""
    if marker_dir:
        Path(marker_dir, f"start-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return f"slept {seconds}"


@app.task(max_retries=2, retry_backoff=0.05, retry_jitter=False)
def fails_once(marker: str) -> str:
    p = Path(marker)
    if not p.exists():
        p.touch()
        raise ConnectionError("first attempt fails")
    return "second attempt ok"
