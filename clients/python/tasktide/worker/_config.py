"""How a worker runs: its queues, concurrency, pool and batching (set by `tasktide worker`'s options)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerConfig:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 4
    pool: str = "threads"  # threads | asyncio | processes (plain functions; async def runs on the loop)
    app_target: str = ""  # MODULE:APP, needed by the process pool
    prefetch: int = 0  # extra assignments held beyond concurrency; 0 = by task length (_credit.py)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    flush_interval: float | None = None  # seconds an outcome waits for others; None = by task length
    max_batch: int = 256
