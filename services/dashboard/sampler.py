"""The charts' data: the dashboard samples the platform every few seconds and keeps the last hour
in memory (a bounded ring buffer, lost when the dashboard restarts).

Each sample holds, for the interval since the previous one: tasks that finished (succeeded, failed),
from ListTasks counts over that time range; the queues' depth and running tasks (QueueStats); and the
time from submission to the end (p50/p95) of up to TURNAROUND_SAMPLE tasks that finished in it,
from their records (created_ms to updated_ms). The platform keeps no start-of-run time in the index,
so run time and wait time are not shown apart: turnaround is their sum.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from tasktide.v1 import results_pb2, worker_pb2

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600.0
TURNAROUND_SAMPLE = 200  # finished tasks read per interval for the turnaround percentiles
FINISHED_OK = ("TASK_STATE_SUCCEEDED",)
FINISHED_BAD = ("TASK_STATE_FAILED", "TASK_STATE_DEAD")


class Source(Protocol):
    """What the sampler reads (a tasktide.Client)."""

    def list_tasks(self, state: Any = (), **kw: Any) -> results_pb2.ListTasksResponse: ...

    def queue_stats(self) -> list[worker_pb2.QueueStat]: ...


@dataclass(frozen=True)
class Sample:
    at_ms: int
    seconds: float  # the interval this sample covers
    succeeded: int
    failed: int
    queued: int  # ready in every queue, at the sample time
    running: int
    turnaround_p50_ms: float | None
    turnaround_p95_ms: float | None


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def take_sample(source: Source, since_ms: int, now_ms: int) -> Sample:
    since = dt.datetime.fromtimestamp(since_ms / 1000, dt.UTC)
    until = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    finished = source.list_tasks(
        ["SUCCEEDED", "FAILED", "DEAD"], since=since, until=until, limit=TURNAROUND_SAMPLE, counts=True
    )
    turnaround = [float(r.updated_ms - r.created_ms) for r in finished.tasks if r.created_ms and r.updated_ms]
    stats = source.queue_stats()
    counts = finished.counts_by_state
    return Sample(
        at_ms=now_ms,
        seconds=round((now_ms - since_ms) / 1000, 3),
        succeeded=sum(int(counts.get(s, 0)) for s in FINISHED_OK),
        failed=sum(int(counts.get(s, 0)) for s in FINISHED_BAD),
        queued=sum(q.ready for q in stats),
        running=sum(q.leased for q in stats),
        turnaround_p50_ms=percentile(turnaround, 50),
        turnaround_p95_ms=percentile(turnaround, 95),
    )


class Sampler:
    """A thread that samples `source` every `interval` seconds into a ring buffer of one hour."""

    def __init__(self, source: Source, interval: float, clock: Callable[[], float] = time.time) -> None:
        if interval <= 0:
            raise ValueError("the sample interval must be positive")
        self.source = source
        self.interval = interval
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=max(2, int(WINDOW_SECONDS / interval) + 1))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-sampler", daemon=True)
        self.errors = 0
        self.last_error = ""

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 10)

    def _run(self) -> None:
        previous = int(self._clock() * 1000)
        while not self._stop.wait(self.interval):
            now = int(self._clock() * 1000)
            try:
                sample = take_sample(self.source, previous, now)
            except Exception as exc:  # noqa: BLE001 - a failing read never ends the sampling
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("dashboard sample failed: %s", self.last_error)
                continue  # the next sample covers this interval too
            with self._lock:
                self._samples.append(sample)
            previous = now

    def series(self) -> dict[str, Any]:
        """The samples of the last hour, oldest first, as JSON-ready columns."""
        cutoff = int((self._clock() - WINDOW_SECONDS) * 1000)
        with self._lock:
            samples = [s for s in self._samples if s.at_ms >= cutoff]
        columns: dict[str, list[Any]] = {k: [] for k in Sample.__dataclass_fields__}
        for s in samples:
            for k, v in asdict(s).items():
                columns[k].append(v)
        return {
            "interval_seconds": self.interval,
            "window_seconds": WINDOW_SECONDS,
            "errors": self.errors,
            "last_error": self.last_error,
            **columns,
        }
