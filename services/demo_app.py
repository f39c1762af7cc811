"""The example app of `tasktide dev --demo` (task names `examples.*`), shipped with the server so the
demo runs from any folder: `tasktide worker tasktide_services.demo_app:app`."""

from __future__ import annotations

import asyncio
import random
import time

import tasktide

app = tasktide.App("examples")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def resize(image: str, width: int) -> dict[str, object]:
    """Pretend to resize an image, reporting progress."""
    ctx = tasktide.current_task()
    for step in range(1, 5):
        time.sleep(0.05)
        ctx.progress(step / 4, f"pass {step} of 4")
    return {"image": image, "width": width}


@app.task(max_retries=3, retry_backoff=0.2)
def flaky(n: int) -> int:
    """Fails now and then; retried with backoff."""
    if random.random() < 0.3:
        raise ConnectionError(f"upstream hiccup on item {n}")
    return n * n


@app.task
async def fetch(url: str) -> str:
    await asyncio.sleep(0.05)
    return f"fetched {url}"


@app.task
def fail(message: str) -> None:
    raise ValueError(message)
