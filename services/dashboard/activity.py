"""Counters per task name and per worker over the last hour, from the task index.

ListTasks counts carry no split by state per name or per worker, so these come from reading the
index itself, newest first, up to SCAN_LIMIT tasks (the answer says when it stopped there):
per task name succeeded, failed, and run and wait time p50/p95 (runs.py); per worker the tasks
whose latest event came from it (processed, failed, running now), with its concurrency and last
heartbeat from ListWorkers.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict
from typing import Any

from tasktide import Client, TaskState
from tasktide_services.dashboard.runs import Tally
from tasktide_services.dashboard.scan import SCAN_LIMIT, scan

FRESH_SECONDS = 5.0  # a scan answers every request within this time (however many pages are open)
WINDOW_SECONDS = 3600


def activity(client: Client, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    since = dt.datetime.fromtimestamp(now - WINDOW_SECONDS, dt.UTC)
    names: dict[str, Tally] = defaultdict(Tally)
    workers: dict[str, dict[str, int]] = defaultdict(lambda: {"processed": 0, "failed": 0, "active": 0})
    tasks, truncated = scan(client, since)
    for r in tasks:
        state = TaskState.from_proto(r.state).name
        names[r.name or r.spec.name].add(r)
        w = workers[r.worker_id] if r.worker_id else None
        if state in ("SUCCEEDED", "FAILED", "DEAD"):
            if w is not None:
                w["processed"] += 1
                w["failed"] += state != "SUCCEEDED"
        elif state == "RUNNING" and w is not None:
            w["active"] += 1
    by_name = [{"name": name, **n.summary()} for name, n in sorted(names.items(), key=lambda kv: -kv[1].total)]
    now_ms = int(now * 1000)
    connected = {w.worker_id: w for w in client.workers()}
    by_worker = []
    for worker_id in sorted(set(workers) | set(connected)):
        counts = workers.get(worker_id, {"processed": 0, "failed": 0, "active": 0})
        info = connected.get(worker_id)
        by_worker.append(
            {
                "worker_id": worker_id,
                **counts,
                "online": info is not None,
                "concurrency": info.concurrency if info else None,
                "last_heartbeat_ago_s": (
                    round(max(0, now_ms - info.last_seen_ms) / 1000, 1) if info and info.last_seen_ms else None
                ),
            }
        )
    return {
        "window_seconds": WINDOW_SECONDS,
        "scanned": len(tasks),
        "truncated": truncated,
        "scan_limit": SCAN_LIMIT,
        "names": by_name,
        "workers": by_worker,
    }


class Activity:
    """activity() of one client, read at most once per FRESH_SECONDS (one scan at a time)."""

    def __init__(self, client: Client, fresh_seconds: float = FRESH_SECONDS) -> None:
        self.client = client
        self.fresh_seconds = fresh_seconds
        self._lock = threading.Lock()
        self._at = 0.0
        self._last: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._last is None or time.monotonic() - self._at >= self.fresh_seconds:
                self._last = activity(self.client)
                self._at = time.monotonic()
            return self._last
