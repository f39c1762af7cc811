"""The charts' data: the dashboard samples the platform every few seconds and keeps the last hour
in memory (a bounded ring buffer, lost when the dashboard restarts).

Each sample holds, for the interval since the previous one (read LAG_MS late): the tasks that
finished in it (succeeded, failed), read from ListTasks over that time range (up to READ_LIMIT);
the queues' depth and running tasks (QueueStats); and the wait time and run time (p50/p95, of
their latest attempts: runs.py) of the tasks that finished in it.
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
from tasktide_services.dashboard.runs import Tally

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600.0
PAGE = 1000
READ_LIMIT = 10_000  # finished tasks read per interval at most (the sample is then marked capped)
# Event times come from the workers' clocks and reach the index a moment after: each interval is
# read this long after its end, so an event stamped just before a sample is not missed.
LAG_MS = 2000
FINISHED = ["SUCCEEDED", "FAILED", "DEAD"]


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
    capped: bool  # more finished than READ_LIMIT: the counts are a lower bound
    queued: int  # ready in every queue, at the sample time
    running: int
    run_p50_ms: float | None
    run_p95_ms: float | None
    wait_p50_ms: float | None
    wait_p95_ms: float | None


def take_sample(source: Source, since_ms: int, now_ms: int) -> Sample:
    since = dt.datetime.fromtimestamp(since_ms / 1000, dt.UTC)
    until = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    tally = Tally()
    cursor, capped = "", False
    while True:  # the index's counts are per time bucket (an hour): the interval's tasks are read
        page = source.list_tasks(FINISHED, since=since, until=until, limit=PAGE, cursor=cursor)
        for r in page.tasks:
            tally.add(r)
        cursor = page.next_cursor
        if not cursor:
            break
        if tally.total >= READ_LIMIT:
            capped = True
            break
    stats = source.queue_stats()
    return Sample(
        at_ms=now_ms,
        seconds=round((now_ms - since_ms) / 1000, 3),
        succeeded=tally.succeeded,
        failed=tally.total - tally.succeeded,
        capped=capped,
        queued=sum(q.ready for q in stats),
        running=sum(q.leased for q in stats),
        **tally.times(),
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
        previous = int(self._clock() * 1000) - LAG_MS
        while not self._stop.wait(self.interval):
            now = int(self._clock() * 1000) - LAG_MS
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
