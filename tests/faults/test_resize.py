"""A worker resized (ResizeWorker), then its registry SIGKILLed and started again: the worker's new
session opens at the size it was given (its Hello says so), it runs that many at a time, no more,
and nothing is lost or run twice."""

from __future__ import annotations

import time
from pathlib import Path

from tasktide_services.testing import eventually
from tests.faults.conftest import make_rig
from tests.faults.figures import runs


def _sizes(rig, queue: str, but: str = "") -> list[int]:  # type: ignore[no-untyped-def]
    """The concurrency of each worker session of `queue` (but session `but`)."""
    return [w.concurrency for w in rig.client.workers() if list(w.queues) == [queue] and w.session_id != but]


def _started(markers: Path) -> int:
    return sum(runs(markers).values())


def test_a_resized_worker_keeps_its_size_across_a_registry_restart(tmp_path: Path, queue_name: str) -> None:
    release = tmp_path / "release"
    # leases longer than the restart and the worker's reconnection: what it holds is not redelivered
    with make_rig(tmp_path, queue_name, n_workers=1, env={"TASKTIDE_LEASE_SECONDS": "15"}) as rig:
        (info,) = eventually(lambda: [w for w in rig.client.workers() if list(w.queues) == [queue_name]], timeout=30)
        assert info.concurrency == 4
        assert rig.client.resize_worker(info.worker_id, 2) == 1
        eventually(lambda: _sizes(rig, queue_name) == [2], timeout=10)
        ids = [rig.client.submit("t.held", [str(rig.markers), str(release)], queue=queue_name).id for _ in range(6)]
        eventually(lambda: _started(rig.markers) == 2, timeout=30)
        rig.cluster.kill("registry")
        time.sleep(1.0)
        rig.cluster.start("registry")
        back = time.monotonic()
        # the new session, at the new size (the killed registry's entry of the old one stays until
        # housekeeping finds it stale)
        eventually(lambda: _sizes(rig, queue_name, but=info.session_id) == [2], timeout=30)
        time.sleep(1.0)
        at_once = _started(rig.markers)  # two held and running: none other started on the new session
        release.touch()
        fig = rig.count(
            "SIGKILL of the registry of a worker resized from 4 to 2 (two tasks held), restarted 1 s later",
            ids,
            back,
            timeout=30,
        )
    rig.assert_held(fig)
    assert fig.run_twice == 0
    assert at_once == 2
