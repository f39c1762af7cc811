"""A Python worker's outbox stays bounded while its session cannot be written: a task that reports
progress in a loop while the registry is down (killed) or stalled (SIGSTOP: the stream is held up by
flow control) leaves one entry for its latest report, not one per report; when the registry is
back, the latest report and the outcome arrive. The services run as their own processes on a Redis
of their own; the worker runs in the test's process, so its outbox can be counted."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasktide
from tasktide import Client
from tasktide_services.testing import client_settings, register_services, run_worker_thread
from tests.faults.cluster import Cluster, cluster
from tests.processes import own_redis

REPORTS = 100_000

app = tasktide.App("bounds")
_started, _go, _reported, _finish = (threading.Event() for _ in range(4))


@app.task
def chatty(n: int) -> int:
    """Reports progress `n` times once let go, then waits to be let finish."""
    _started.set()
    _go.wait(60)
    ctx = tasktide.current_task()
    for i in range(1, n + 1):
        ctx.progress(i / n, f"report {i}")
    _reported.set()
    _finish.wait(60)
    return n


class _SessionLost(logging.Handler):
    """Set when the worker logs that its session was lost."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("session lost"):
            self.lost.set()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Cluster]:
    logs = tmp_path / "logs"
    logs.mkdir()
    with own_redis(tmp_path / "redis") as url, cluster({"TASKTIDE_REDIS_URL": url}, logs) as c:
        register_services(c.env["TASKTIDE_ADDRESS"], c.env)
        try:
            yield c
        finally:
            register_services(c.env["TASKTIDE_ADDRESS"], {})


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_progress_while_the_registry_is_down_keeps_one_entry_per_task(
    services: Cluster, queue_name: str, fault: str
) -> None:
    for e in (_started, _go, _reported, _finish):
        e.clear()
    watcher = _SessionLost()
    logger = logging.getLogger("tasktide.worker")
    logger.addHandler(watcher)
    address = services.env["TASKTIDE_ADDRESS"]
    try:
        with (
            run_worker_thread(app, address, queues=(queue_name,), concurrency=2) as worker,
            Client(settings=client_settings(address)) as client,
        ):
            h = client.submit("bounds.chatty", args=[REPORTS], queue=queue_name)
            assert _started.wait(30), "the task did not start"
            if fault == "killed":
                services.kill("registry")
                assert watcher.lost.wait(30), "the worker did not notice its session was lost"
            else:
                services.procs["registry"].send_signal(signal.SIGSTOP)
            _go.set()
            assert _reported.wait(120), "the task did not finish reporting"
            waiting = worker.outbox_size
            assert waiting <= 2, f"{waiting} entries wait in the outbox after {REPORTS} progress reports"
            if fault == "killed":
                services.start("registry")
            else:
                services.procs["registry"].send_signal(signal.SIGCONT)
            _finish.set()
            assert h.get(timeout=60) == REPORTS
            progress = [(e.progress, e.message) for e in client.watch([h.id]) if e.progress_only]
    finally:
        if fault == "paused":
            services.procs["registry"].send_signal(signal.SIGCONT)
        _go.set()
        _finish.set()
        logger.removeHandler(watcher)
    assert progress[-1] == (1.0, f"report {REPORTS}"), progress[-3:]
    if fault == "killed":  # nothing written meanwhile (paused: what flow control let through first)
        assert len(progress) <= 2, f"{len(progress)} progress events recorded"
