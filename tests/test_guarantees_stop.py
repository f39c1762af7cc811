"""A hard time limit and a cancel stop the work itself, in every pool: the task's ticks stop, its
child process is gone, and the worker's one slot runs the next task (docs/guarantees.md)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

import tasktide
from tasktide import TaskState
from tasktide_services.testing import eventually, run_worker_thread
from tests.guarantee_tasks import app
from tests.processes import process_gone

POOLS = ["threads", "processes", "asyncio"]


def _ticks(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _assert_work_stopped(client, queue_name: str, ticks: Path) -> None:
    """The one slot runs the next task; after it, a task held on the server for half a second has
    run too (time has passed, as a positive signal), and no tick was written meanwhile."""
    assert client.submit("g.add", [2, 2], queue=queue_name).get(timeout=15) == 4
    before = _ticks(ticks)
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
    later = client.submit_spec(app.tasks["g.add"].spec([3, 3], queue=queue_name, eta=eta))
    assert later.get(timeout=15) == 6
    assert _ticks(ticks) == before, "the stopped task kept working"


def _start(client, queue_name: str, pool: str, ticks: Path, **opts: object) -> tasktide.TaskHandle:
    """A task that ticks for 60 s. In a child process it swallows the cancel signal, so only the
    hard stop (a kill) ends it; a thread cannot be killed, so there it lets the exception raised
    by the hard stop end it; a coroutine is cancelled."""
    if pool == "asyncio":
        spec = app.tasks["g.async_tick"].spec([str(ticks), 60.0], queue=queue_name, **opts)
    else:
        spec = app.tasks["g.tick"].spec([str(ticks), 60.0, pool == "processes"], queue=queue_name, **opts)
    return client.submit_spec(spec)


def _config(pool: str, queue_name: str) -> dict[str, object]:
    config: dict[str, object] = {"queues": (queue_name,), "pool": pool, "concurrency": 1, "prefetch": 1}
    if pool == "processes":
        config["app_target"] = "tests.guarantee_tasks:app"
    return config


@pytest.mark.parametrize("pool", POOLS)
def test_the_hard_time_limit_stops_the_work(platform, client, queue_name, pool, tmp_path):
    ticks = tmp_path / "ticks"
    with run_worker_thread(app, platform.address, **_config(pool, queue_name)):
        h = _start(client, queue_name, pool, ticks, time_limit=1.0)
        with pytest.raises(tasktide.TaskFailed) as info:
            h.get(timeout=30)  # long before the 60 s the task would tick
        assert info.value.remote_type == "tasktide.TimeLimitExceeded"
        assert _ticks(ticks) > 0, "the task was running"
        _check_child(pool, ticks)
        _assert_work_stopped(client, queue_name, ticks)


@pytest.mark.parametrize("pool", POOLS)
def test_a_cancel_stops_the_work(platform, client, queue_name, pool, tmp_path):
    ticks = tmp_path / "ticks"
    with run_worker_thread(app, platform.address, **_config(pool, queue_name)):
        h = _start(client, queue_name, pool, ticks)
        eventually(lambda: _ticks(ticks) > 0, what="the task to tick")
        assert h.cancel() is TaskState.RUNNING
        with pytest.raises(tasktide.TaskCancelled):
            h.get(timeout=30)  # the task ignores the signal: stopped after the grace period
        _check_child(pool, ticks)
        _assert_work_stopped(client, queue_name, ticks)
    assert h.status() is TaskState.CANCELLED


def _check_child(pool: str, ticks: Path) -> None:
    if pool != "processes":
        return
    child = int(Path(str(ticks) + ".pid").read_text())
    assert child != os.getpid()
    eventually(lambda: process_gone(child), what=f"child process {child} to be gone")
