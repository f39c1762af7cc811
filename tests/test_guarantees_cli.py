"""`tasktide queue`, `explain`, `cancel` and `dead` from the command line, against the services in
one process and each in its own process (docs/guarantees.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tasktide
from tasktide import TaskState
from tasktide_services.testing import eventually, run_worker_thread
from tests.guarantee_tasks import app
from tests.processes import ROOT, platforms

platform = platforms("one", "split")


def cli(platform, *args: str) -> list[dict]:
    """Run `tasktide ARGS` against `platform`; its JSON lines."""
    env = {**os.environ, **getattr(platform, "env", {}), "TASKTIDE_ADDRESS": platform.address}
    res = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_queue_pause_explain_cancel_resume(platform, client, queue_name, tmp_path):
    (stats,) = cli(platform, "queue", "pause", queue_name)
    assert (stats["queue"], stats["ready"], stats["paused"]) == (queue_name, 0, True)
    h = client.submit_spec(app.tasks["g.label"].spec([str(tmp_path / "ran"), "x"], queue=queue_name))
    (why,) = cli(platform, "explain", h.id)
    assert (why["id"], why["state"], why["reason"]) == (h.id, "QUEUED", "QUEUE_PAUSED")
    assert queue_name in why["message"]
    (stats,) = cli(platform, "queue", "stats", queue_name)
    assert (stats["ready"], stats["paused"]) == (1, True)
    assert cli(platform, "cancel", h.id) == [{"id": h.id, "state": "CANCELLED"}]
    assert cli(platform, "status", h.id)[0]["state"] == "CANCELLED"
    (stats,) = cli(platform, "queue", "resume", queue_name)
    assert (stats["ready"], stats["paused"]) == (0, False)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert client.submit("g.add", [1, 1], queue=queue_name).get(timeout=15) == 2
    assert not (tmp_path / "ran").exists(), "the cancelled task never ran"


def test_cancel_a_running_task(platform, client, queue_name, tmp_path):
    ticks = tmp_path / "ticks"
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=1):
        h = client.submit_spec(app.tasks["g.tick"].spec([str(ticks), 60.0], queue=queue_name))
        eventually(ticks.exists, what="the task to start")
        assert cli(platform, "explain", h.id)[0]["reason"] == "RUNNING"
        assert cli(platform, "cancel", h.id) == [{"id": h.id, "state": "RUNNING"}]  # signalled
        with pytest.raises(tasktide.TaskCancelled):
            h.get(timeout=30)
    assert h.status() is TaskState.CANCELLED


def test_dead_letters_listed_and_requeued(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit_spec(app.tasks["g.always_fails"].spec(["broken"], queue=queue_name))
        with pytest.raises(tasktide.TaskDead):
            h.get(timeout=15)
    # The final event is recorded before the task joins the dead letters: wait for them to list it.
    (dead,) = eventually(lambda: cli(platform, "dead", "--queue", queue_name), what="the dead letter")
    assert (dead["id"], dead["name"], dead["queue"]) == (h.id, "g.always_fails", queue_name)
    assert cli(platform, "explain", h.id)[0]["state"] == "DEAD"
    assert cli(platform, "dead", "--requeue", "--queue", queue_name, h.id) == [{"requeued": 1}]
    assert cli(platform, "dead", "--queue", queue_name) == []
    (stats,) = cli(platform, "queue", "stats", queue_name)
    assert (stats["ready"], stats["dead"]) == (1, 0)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        eventually(lambda: h.status() is TaskState.DEAD, what="the requeued task to fail again")
        eventually(lambda: [d["id"] for d in cli(platform, "dead", "--queue", queue_name)] == [h.id])
