"""Every Redis key the scheduler owns.

tt:s:task:{id}        STRING  serialized tasktide.v1.Task (the task record); expires with results
tt:s:idem:{key}       STRING  task id submitted under an idempotency key
tt:s:delayed          ZSET    task id -> Unix ms when it may run (countdown, ETA, retry backoff)
tt:s:moving           ZSET    task id -> deadline; claimed from :delayed, being handed to the registry
"""

from __future__ import annotations

DELAYED = "tt:s:delayed"
MOVING = "tt:s:moving"


def task(task_id: str) -> str:
    return f"tt:s:task:{task_id}"


def idem(key: str) -> str:
    return f"tt:s:idem:{key}"


def rate(name: str) -> str:
    return f"tt:s:rate:{name}"
