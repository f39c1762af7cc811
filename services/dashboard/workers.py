"""The worker page's data: one worker's sessions online (ListWorkers) and the tasks it runs now (the
task index: RUNNING, latest event from the worker), read at each request, and the summary of the
tasks it ran that changed in the last hour (report.py), read at most every few seconds (Reports).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from tasktide import Client, TaskState
from tasktide_services.dashboard.data import iso, session_row
from tasktide_services.dashboard.report import WINDOW_SECONDS, Reports, report, row

MAX_WORKER_ID = 256  # characters, as the registry takes them (DrainWorker)
RUNNING_LISTED = 200  # tasks listed as running now, at most


def worker_report(client: Client, worker_id: str, summaries: Reports) -> dict[str, Any] | None:
    """The page's data for `worker_id`; None when it has no session and no task of it changed in
    the window."""
    now = time.time()
    now_ms = int(now * 1000)
    sessions = [session_row(w, now_ms) for w in client.workers() if w.worker_id == worker_id]
    since = dt.datetime.fromtimestamp(now - WINDOW_SECONDS, dt.UTC)
    page = client.list_tasks(TaskState.RUNNING, worker_id=worker_id, since=since, limit=RUNNING_LISTED)
    running = [
        {**row(r), "running_s": round(max(0, now_ms - r.started_ms) / 1000, 1) if r.started_ms else None}
        for r in page.tasks
    ]
    body = summaries.get(worker_id)
    if body is None and not sessions:
        return None
    return {
        "worker_id": worker_id,
        "now": iso(now_ms),
        "online": bool(sessions),
        "sessions": sessions,
        "running": running,
        "running_more": bool(page.next_cursor),
        "running_limit": RUNNING_LISTED,
        "window_seconds": WINDOW_SECONDS,
        "tasks": body,  # None: no task of this worker changed in the window
    }


def summaries(client: Client) -> Reports:
    """The cache of the workers' summaries that worker_report reads."""
    return Reports(lambda worker_id: report(client, worker_id=worker_id))
