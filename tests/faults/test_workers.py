"""A worker that stops answering: paused (SIGSTOP) past its lease, then resumed; cut off from the
registry (a proxy between them stops forwarding) while it holds tasks, then reconnected. Its
tasks go to the other worker; when it comes back its late outcomes are refused (stale fencing
token), so every task keeps the one result of the attempt that held the lease."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.faults.conftest import make_rig
from tests.faults.proxy import proxy

LEASE = 3.0


def test_worker_paused_past_its_lease(tmp_path: Path, queue_name: str) -> None:
    with make_rig(tmp_path, queue_name) as rig:
        load = rig.load(200)
        time.sleep(1.0)
        paused = rig.workers.procs[0]
        paused.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        time.sleep(2 * LEASE)
        paused.send_signal(signal.SIGCONT)
        ids = load.join()
        # Recovery is counted from the pause: the held tasks run elsewhere once their leases expire.
        case = f"a worker SIGSTOPped for {2 * LEASE:.1f} s (lease {LEASE:.0f} s), under load; recovery from the pause"
        fig = rig.count(case, ids, began)
    rig.assert_held(fig)


def test_worker_cut_off_from_the_registry(tmp_path: Path, queue_name: str) -> None:
    with make_rig(tmp_path, queue_name, n_workers=1) as rig, proxy(rig.cluster.addresses["registry"]) as relay:
        rig.workers.spawn(1, env={"TASKTIDE_REGISTRY_ADDRESS": relay.address})
        load = rig.load(200)
        time.sleep(1.0)
        relay.cut()
        began = time.monotonic()
        time.sleep(2 * LEASE)
        relay.heal()
        ids = load.join()
        case = f"a worker cut off from the registry for {2 * LEASE:.1f} s, under load; recovery from the cut"
        fig = rig.count(case, ids, began)
    rig.assert_held(fig)
