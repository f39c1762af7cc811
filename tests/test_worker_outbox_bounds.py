"""A worker's outbox stays bounded while its session cannot be written: a task that reports progress
in a loop while the registry is down (killed) or stalled (SIGSTOP: the stream is held up by flow
control) leaves one entry for its latest report, not one per report; when the registry is back, the
latest report and the outcome arrive. The same for the Python, Go and Node.js workers. The services
run as their own processes on a Redis of their own. The Python worker runs in the test's process, so
its outbox can be counted; the Go and Node.js workers write their count to a file."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasktide
from tasktide import Client, ClientSettings
from tasktide_services.testing import client_settings, register_services, run_worker_thread
from tests.faults.cluster import Cluster, cluster
from tests.go_build import GO_DIR, go_env
from tests.processes import own_redis
from tests.test_go_worker_sessions import go_test_worker as go_test_worker  # noqa: F401 - the fixture
from tests.test_go_worker_sessions import wait_until
from tests.test_node_client import NODE_DIR
from tests.test_node_client import node as node  # noqa: F401 - the fixture

REPORTS = 100_000
# A Node.js worker also counts the messages in its stream's own buffer, which takes some before the
# stream reports that it is held up: a few dozen at most, whatever the number of reports.
MOST_WAITING = 64

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


@app.task
def hold(folder: str, name: str) -> str:
    """Says it started (folder/started-NAME), then waits for folder/release-NAME."""
    marks = Path(folder)
    (marks / f"started-{name}").touch()
    while not (marks / f"release-{name}").exists():
        time.sleep(0.01)
    return name


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
    with own_redis(tmp_path / "redis") as url:
        # Leases outlast the outage (the fault suite's 3 s would not): the task is not delivered again.
        with cluster({"TASKTIDE_REDIS_URL": url, "TASKTIDE_LEASE_SECONDS": "60"}, logs) as c:
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


@pytest.mark.parametrize("fault", ["killed", "paused"])
@pytest.mark.parametrize("language", ["go", "node"])
def test_progress_of_a_go_or_node_worker_while_the_registry_is_down(
    services: Cluster, queue_name: str, tmp_path: Path, request: pytest.FixtureRequest, language: str, fault: str
) -> None:
    folder = tmp_path / "marks"
    folder.mkdir()
    addresses = {k: v for k, v in services.env.items() if k.endswith("_ADDRESS")}
    env = go_env(**addresses, TASKTIDE_QUEUES=queue_name, TASKTIDE_TEST_CONCURRENCY="2")
    if language == "go":
        command, cwd, task = [str(request.getfixturevalue("go_test_worker"))], GO_DIR, "gotest.chatty"
    else:
        command, cwd, task = (
            [request.getfixturevalue("node"), "test/fixtures/chatty_worker.js"],
            NODE_DIR,
            "node.chatty",
        )
    log_path = tmp_path / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed with the worker
    worker = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    registry = services.procs["registry"]
    try:
        with Client(settings=ClientSettings.from_env(addresses)) as client:
            h = client.submit(task, [str(folder), REPORTS], queue=queue_name)
            wait_until(lambda: (folder / "started").exists(), "the task started")
            if fault == "killed":
                services.kill("registry")
                wait_until(lambda: "session lost" in log_path.read_text(), "the worker noticed its session was lost")
            else:
                registry.send_signal(signal.SIGSTOP)
            (folder / "go").touch()
            wait_until(lambda: (folder / "reported").exists(), "the task reported", timeout=120)
            waiting = int((folder / "reported").read_text() or "0")
            if fault == "killed":
                services.start("registry")
            else:
                registry.send_signal(signal.SIGCONT)
            (folder / "finish").touch()
            assert h.get(timeout=60) == REPORTS, log_path.read_text()[-2000:]
            progress = [(e.progress, e.message) for e in client.watch([h.id]) if e.progress_only]
    finally:
        registry.send_signal(signal.SIGCONT)
        (folder / "go").touch()
        (folder / "finish").touch()
        worker.terminate()
        worker.wait(20)
        log.close()
    print(f"{language}, registry {fault}: {waiting} waiting after {REPORTS} reports, {len(progress)} recorded")
    assert waiting <= MOST_WAITING, f"{waiting} messages wait to be written after {REPORTS} progress reports"
    assert progress[-1] == (1.0, f"report {REPORTS}"), progress[-3:]
    if fault == "killed":
        assert len(progress) <= 2, f"{len(progress)} progress events recorded"
    else:  # what flow control let through before the stream was held up, then the latest
        assert len(progress) < REPORTS // 10, f"{len(progress)} progress events recorded"


def test_outcomes_written_after_a_reconnection_count_as_in_hand(
    services: Cluster, queue_name: str, tmp_path: Path
) -> None:
    """A worker with a window of two tasks finishes both while the registry is down: their outcomes
    wait to be written. The new session's credit counts them as in hand, so once they are written
    the worker holds two tasks again, not four."""
    marks = tmp_path / "marks"
    marks.mkdir()
    watcher = _SessionLost()
    logger = logging.getLogger("tasktide.worker")
    logger.addHandler(watcher)
    address = services.env["TASKTIDE_ADDRESS"]

    def stat() -> tuple[int, int]:
        (q,) = [q for q in client.queue_stats() if q.queue == queue_name]
        return q.ready, q.leased

    try:
        with (
            run_worker_thread(app, address, queues=(queue_name,), concurrency=1, prefetch=1) as worker,
            Client(settings=client_settings(address)) as client,
        ):
            names = "abcdef"
            handles = [client.submit("bounds.hold", args=[str(marks), n], queue=queue_name) for n in names]
            wait_until(lambda: (marks / "started-a").exists() and stat() == (4, 2), "a running, b held, 4 ready")
            services.kill("registry")
            assert watcher.lost.wait(30), "the worker did not notice its session was lost"
            for n in "ab":
                (marks / f"release-{n}").touch()
            wait_until(lambda: worker.completed == 2, "a and b finished while the registry was down")
            services.start("registry")
            assert [h.get(timeout=60) for h in handles[:2]] == ["a", "b"]
            wait_until(lambda: (marks / "started-c").exists(), "c started")
            wait_until(lambda: stat() == (2, 2), "c running and d held, e and f ready", timeout=30)
            for n in names[2:]:
                (marks / f"release-{n}").touch()
            assert [h.get(timeout=60) for h in handles[2:]] == list(names[2:])
    finally:
        for n in "abcdef":
            (marks / f"release-{n}").touch()
        logger.removeHandler(watcher)
