"""Processes killed under load: workers (SIGKILL, again and again) and each service (SIGKILL, then
started again). Nothing confirmed is lost, no task keeps two results, and the platform recovers on
its own (the workers reconnect, the leases of the killed workers expire and their tasks run again)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.conftest import make_rig
from tests.processes import SERVICES

KILLS = 4


def test_sigkill_workers_under_load(tmp_path: Path, queue_name: str) -> None:
    with make_rig(tmp_path, queue_name, n_workers=3) as rig:
        load = rig.load(300)
        for _ in range(KILLS):
            time.sleep(0.8)
            rig.workers.kill(rig.workers.procs[0])
            rig.workers.spawn(1)
        ended = time.monotonic()
        ids = load.join()
        fig = rig.count(f"SIGKILL of a worker, {KILLS} times in 3 s, under load", ids, ended)
    rig.assert_held(fig)


# The registry refusing Enqueue while it is down makes Submit fail after it claimed the idempotency
# key: the producer's retry with that key gets the id of a task that was never written.


@pytest.mark.parametrize("service", SERVICES)
def test_sigkill_and_restart_of_a_service_under_load(tmp_path: Path, queue_name: str, service: str) -> None:
    with make_rig(tmp_path, queue_name) as rig:
        load = rig.load(200)
        time.sleep(1.0)
        rig.cluster.kill(service)
        time.sleep(1.0)
        rig.cluster.start(service)
        ended = time.monotonic()
        ids = load.join()
        fig = rig.count(f"SIGKILL of the {service}, restarted 1 s later, under load", ids, ended)
    rig.assert_held(fig)


def test_sigkill_and_restart_of_the_scheduler_under_eight_producer_threads(tmp_path: Path, queue_name: str) -> None:
    """Eight threads of one client submitting one by one share its stream's messages; the
    scheduler is killed while several submissions travel together: each of them fails and is
    tried again (same idempotency key), so none is lost and none runs twice."""
    with make_rig(tmp_path, queue_name) as rig:
        load = rig.load(600, rate=1200.0, producers=8)  # each thread submits again within 7 ms
        time.sleep(0.25)
        rig.cluster.kill("scheduler")
        time.sleep(1.0)
        rig.cluster.start("scheduler")
        ended = time.monotonic()
        ids = load.join()
        fig = rig.count("SIGKILL of the scheduler under 8 producer threads, restarted 1 s later", ids, ended)
    assert load.refused > 0  # the kill did catch submissions in flight
    rig.assert_held(fig)
