"""A worker that stops answering: paused (SIGSTOP) past its lease, then resumed; cut off from the
registry (a proxy between them stops forwarding) while it holds tasks, then reconnected. Its
tasks go to the other worker; when it comes back its late outcomes are refused (stale fencing
token), so every task keeps the one result of the attempt that held the lease. And tasks
cancelled while their worker is paused: the Cancel's signal reaches no one, and none of them runs
again elsewhere. And a paused worker that held thousands of tasks: the reaper takes them back over
several passes, each recorded queued again."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from pathlib import Path

from tasktide import TaskState
from tasktide.v1 import task_pb2
from tasktide_services.testing import eventually
from tasktide_services.worker import keys, reaper
from tests.faults.conftest import make_rig
from tests.faults.figures import runs
from tests.faults.proxy import proxy
from tests.processes import redis_command
from tests.tasks_app import app

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


def test_tasks_cancelled_while_their_worker_is_paused_run_nowhere_else(tmp_path: Path, queue_name: str) -> None:
    """A worker (concurrency 4) runs 4 long tasks and holds more; it is SIGSTOPped and all 12 are
    cancelled: those waiting at once, those it holds once their leases expire (the reaper ends
    them CANCELLED). A second worker started meanwhile runs none of them."""
    with make_rig(tmp_path, queue_name, n_workers=1) as rig:
        paused = rig.workers.procs[0]
        ids = [rig.client.submit("t.marked", [str(rig.markers), 8.0], queue=queue_name).id for _ in range(12)]
        deadline = time.monotonic() + 20
        while len(list(rig.markers.iterdir())) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        paused.send_signal(signal.SIGSTOP)
        try:
            began = time.monotonic()
            answers = [rig.client.cancel(t) for t in ids]
            (other,) = rig.workers.spawn(1)
            case = f"12 tasks cancelled while their worker is SIGSTOPped (lease {LEASE:.0f} s), a second worker started"
            fig = rig.count(case, ids, began, expected=dict.fromkeys(ids, task_pb2.TASK_STATE_CANCELLED))
            time.sleep(LEASE)  # a task wrongly queued again would start now
            elsewhere = [m.name for m in rig.markers.iterdir() if f"-{other.pid}-" in m.name]
        finally:
            paused.send_signal(signal.SIGCONT)
    assert answers.count(TaskState.RUNNING) >= 4, answers  # signalled: the paused worker held them
    assert (fig.lost, fig.run_twice, fig.recorded_twice) == (0, 0, 0), fig.line()
    assert elsewhere == [], "cancelled tasks ran on the second worker"


def _expired_on_the_second_worker(events: Iterable[task_pb2.TaskEvent], holder_pid: int) -> bool:
    """Whether a task's timeline shows it running on a worker other than the paused one (pid
    `holder_pid`), then queued again because that lease expired."""
    running_elsewhere = False
    for e in events:
        if e.state == task_pb2.TASK_STATE_RUNNING:
            running_elsewhere = f"-{holder_pid}-" not in e.worker_id
        elif e.state == task_pb2.TASK_STATE_QUEUED and "expired" in e.message and running_elsewhere:
            return True
    return False


def test_a_paused_worker_holding_thousands_of_tasks_has_every_one_queued_again(tmp_path: Path, queue_name: str) -> None:
    """A worker (concurrency 1, a prefetch of thousands) runs one long task and holds 2,500 more
    when it is SIGSTOPped. Their leases expire together: the reaper takes them over several passes
    (REAP_LIMIT per queue and pass), records each one queued again in Record calls of RECORD_BATCH
    events, and puts it back; a second worker runs every one, once each but the long one, whose
    body had started on the paused worker."""
    n = 2 * reaper.REAP_LIMIT + 500
    release = tmp_path / "release"
    with make_rig(tmp_path, queue_name, n_workers=0) as rig:
        (holder,) = rig.workers.spawn(1, options=["--concurrency", "1", "--prefetch", str(n + 100)])
        long_one = rig.client.submit("t.held", [str(rig.markers), str(release)], queue=queue_name).id
        eventually(lambda: len(list(rig.markers.iterdir())) == 1, timeout=20)
        specs = [app.tasks["t.marked"].spec([str(rig.markers)], queue=queue_name) for _ in range(n)]
        ids = [long_one] + [h.id for h in rig.client.submit_many(specs)]
        try:
            leases = keys.queue_keys(queue_name).leases
            # the worker holds them all
            eventually(lambda: redis_command(rig.redis.url, "ZCARD", leases) == n + 1, timeout=30, interval=0.2)
            holder.send_signal(signal.SIGSTOP)
            began = time.monotonic()
            release.touch()  # the long one returns at once where it runs next
            rig.workers.spawn(1)
            case = f"a worker holding {n + 1} tasks SIGSTOPped (lease {LEASE:.0f} s), a second worker started"
            fig = rig.count(case, ids, began, timeout=90)
            sample = ids[:: n // 50]
            requeued = {e.task_id for e in rig.client.watch(sample) if "queued again" in e.message}
            started = runs(rig.markers)
            again = [t for t in ids if started[t] > 1 and t != long_one]
            unexplained = [t for t in again if not _expired_on_the_second_worker(rig.client.watch([t]), holder.pid)]
        finally:
            rig.workers.kill(holder)
    rig.assert_held(fig)
    assert started[long_one] >= 2, fig.line()  # its first run the pause cut short
    # Any other task runs once, but where its lease ran out on the second worker too (a lease of 3 s
    # on a loaded machine): delivered again after that, as at-least-once allows. None is handed out
    # twice by the reaper's takeover.
    assert not unexplained, f"{len(unexplained)} of {len(again)} run again without a lease expiry: {fig.line()}"
    assert requeued == set(sample), f"{len(set(sample) - requeued)} of {len(sample)} have no QUEUED event of the reaper"
