"""A worker paused past its lease (SIGSTOP: a long GC pause, a VM migration) loses the task to a
worker that is free, instead of getting every redelivery of it until it is dead-lettered."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tasktide import Client, TaskState
from tasktide_services.testing import TEST_LEASE_SECONDS, PlatformThread, spawn
from tests.processes import ROOT

ROUNDS = 5
TASK_SECONDS = 1.5


def _wait_for_start(markers: Path, seen: set[str], timeout: float = 30.0) -> int:
    """The pid of the worker that started the task next (a new marker file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = {p.name for p in markers.iterdir()} - seen
        if new:
            (name,) = new
            seen.add(name)
            return int(name.split("-")[1])
        time.sleep(0.02)
    raise AssertionError("no worker started the task")


def test_task_of_a_paused_worker_completes_on_the_free_one(
    platform: PlatformThread, client: Client, queue_name: str, tmp_path: Path
) -> None:
    env = {"TASKTIDE_ADDRESS": platform.address}
    markers = tmp_path / "starts"
    markers.mkdir()
    workers: dict[int, subprocess.Popen[str]] = {}
    for _ in range(2):
        p = spawn("worker", "tests.tasks_app:app", "--queues", queue_name, env=env, cwd=ROOT)
        workers[p.pid] = p
    seen: set[str] = set()
    outcomes = []
    try:
        # Both are connected before the rounds start.
        assert client.submit("t.add", [1, 1], queue=queue_name).get(timeout=30) == 2
        for _ in range(ROUNDS):
            h = client.submit("t.slow", [TASK_SECONDS, str(markers)], queue=queue_name)
            paused = _wait_for_start(markers, seen)
            workers[paused].send_signal(signal.SIGSTOP)
            try:
                result = client.wait(h.id, timeout=8 * TEST_LEASE_SECONDS + 30)
            finally:
                workers[paused].send_signal(signal.SIGCONT)
            outcomes.append((TaskState.from_proto(result.state), f"-{paused}-" in result.worker_id))
            # The paused worker finishes its stale attempt (its outcome is refused) before the next round.
            time.sleep(TASK_SECONDS + 0.5)
            seen |= {p.name for p in markers.iterdir()}
        assert outcomes == [(TaskState.SUCCEEDED, False)] * ROUNDS
    finally:
        for p in workers.values():
            p.send_signal(signal.SIGCONT)
            p.terminate()
        for p in workers.values():
            p.wait(20)
