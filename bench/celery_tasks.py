"""The Celery tasks of the benchmark; workers run `celery -A bench.celery_tasks worker`.

Broker and result backend are the Redis URL in BENCH_CELERY_URL; JSON serialization only.
"""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/1")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task
def noop() -> None:
    return None


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def total(values: list[int]) -> int:
    return sum(values)
