"""The summary of one slice of the task index for the dashboard's task-name and worker pages: the
tasks of a task name, or of a worker, that changed in the last hour (ListTasks with that filter,
newest first, up to scan.py SCAN_LIMIT; the answer says when it stopped there), summed up: counts by
state, succeeded and failed, wait and run time p50/p95 (runs.py), the most recent runs, the failures
by error type, and per minute the tasks that finished and their run and wait times.

Reports is the pages' cache: a report is read at most once per FRESH_SECONDS for each key, and the
latest CACHED keys are kept.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from tasktide import Client, TaskState
from tasktide.v1 import task_pb2
from tasktide_services.dashboard.data import iso
from tasktide_services.dashboard.runs import ENDED, FAILED, Tally, run_ms, wait_ms
from tasktide_services.dashboard.scan import SCAN_LIMIT, scan

WINDOW_SECONDS = 3600
SLOT_SECONDS = 60  # the chart's points: one a minute
RECENT = 50  # runs listed
FRESH_SECONDS = 5.0  # a report answers every request for its key within this time
CACHED = 32  # keys whose latest report is kept (the oldest read goes first)


def row(r: task_pb2.TaskResult) -> dict[str, Any]:
    return {
        "id": r.task_id,
        "name": r.name or r.spec.name,
        "state": TaskState.from_proto(r.state).name,
        "attempt": r.attempt,
        "queue": r.spec.queue,
        "worker": r.worker_id,
        "updated": iso(r.updated_ms),
        "started": iso(r.started_ms),
        "wait_ms": wait_ms(r),
        "run_ms": run_ms(r),
        "error": {"type": r.error.type, "message": r.error.message} if r.error.type or r.error.message else None,
    }


def report(client: Client, now: float | None = None, name: str = "", worker_id: str = "") -> dict[str, Any] | None:
    """The summary of the tasks of task `name`, or run by `worker_id`, that changed in the window;
    None when none did."""
    now = time.time() if now is None else now
    since_ms = int((now - WINDOW_SECONDS) * 1000)
    slot_ms = SLOT_SECONDS * 1000
    slots = [Tally() for _ in range(WINDOW_SECONDS // SLOT_SECONDS)]
    tally, states = Tally(), Counter[str]()
    recent: list[dict[str, Any]] = []
    errors: dict[str, dict[str, Any]] = {}
    since = dt.datetime.fromtimestamp(since_ms / 1000, dt.UTC)
    tasks, truncated = scan(client, since, name=name, worker_id=worker_id)
    for r in tasks:
        tally.add(r)
        states[TaskState.from_proto(r.state).name] += 1
        if len(recent) < RECENT:
            recent.append(row(r))
        if r.state in FAILED:
            kind = r.error.type or "(no error type)"
            if kind not in errors:  # newest first: the first seen is the latest
                errors[kind] = {"type": kind, "count": 0, "message": r.error.message, "task": r.task_id}
                errors[kind]["at"] = iso(r.updated_ms)
            errors[kind]["count"] += 1
        if r.state in ENDED:
            i = (r.updated_ms - since_ms) // slot_ms
            slots[min(max(i, 0), len(slots) - 1)].add(r)
    scanned = len(tasks)
    if not scanned:
        return None
    series: dict[str, list[Any]] = {"at_ms": [since_ms + (i + 1) * slot_ms for i in range(len(slots))]}
    for s in slots:
        for k, v in {"succeeded": s.succeeded, "failed": s.failed, **s.times()}.items():
            series.setdefault(k, []).append(v)
    return {
        "window_seconds": WINDOW_SECONDS,
        "scanned": scanned,
        "truncated": truncated,
        "scan_limit": SCAN_LIMIT,
        "summary": tally.summary(),
        "states": dict(states),
        "recent": recent,
        "errors": sorted(errors.values(), key=lambda e: -int(e["count"])),
        "series": {"slot_seconds": SLOT_SECONDS, **series},
    }


class Reports:
    """`read(key)` at most once per FRESH_SECONDS for each key, the latest CACHED keys kept."""

    def __init__(self, read: Callable[[str], dict[str, Any] | None], fresh_seconds: float = FRESH_SECONDS) -> None:
        self.read = read
        self.fresh_seconds = fresh_seconds
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and time.monotonic() - kept[0] < self.fresh_seconds:
                self._kept.move_to_end(key)
                return kept[1]
            body = self.read(key)
            self._kept[key] = (time.monotonic(), body)
            self._kept.move_to_end(key)
            while len(self._kept) > CACHED:
                self._kept.popitem(last=False)
            return body
