"""Processes killed under load: workers (SIGKILL, again and again) and each service (SIGKILL, then
started again). Nothing confirmed is lost, no task keeps two results, and the platform recovers on
its own (the workers reconnect, the leases of the killed workers expire and their tasks run again)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from tasktide import Client, ClientSettings, TaskState, Unavailable
from tasktide_services.scheduler import keys
from tasktide_services.scheduler.store import HANDOVER_MS, PENDING
from tasktide_services.scheduler.writing import ENQUEUE_TIMEOUT
from tasktide_services.testing import eventually
from tests.faults.conftest import make_rig
from tests.processes import SERVICES
from tests.raw_session import RawSession

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


def _held(r: redis.Redis, key: str, timeout: float = 10.0) -> str:
    """What the idempotency key holds once the scheduler has claimed it ("" if it never did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = r.get(keys.idem(key))
        if value is not None:
            return str(value.decode())
        time.sleep(0.01)
    return ""


@pytest.mark.timeout(180)
def test_sigkill_of_the_scheduler_while_the_registry_takes_a_task_submitted_under_a_key(
    tmp_path: Path, queue_name: str
) -> None:
    """The registry is SIGSTOPped, so the scheduler's Enqueue of a task submitted under an
    idempotency key waits; the scheduler is SIGKILLed meanwhile and started again. The submission
    was never answered. Its retry is answered with the task written before the kill, not refused
    while a pending claim lapses and then admitted as a second task; that task runs (the pump hands
    it over after store.ENQUEUE_MS, or the registry had it) and keeps one result."""
    key = f"{queue_name}-once"
    with make_rig(tmp_path, queue_name) as rig:
        r = redis.Redis.from_url(rig.redis.url)
        registry = rig.cluster.procs["registry"]
        first: list[object] = []

        def submit_first() -> None:
            with Client(settings=ClientSettings.from_env(rig.cluster.env)) as c:
                try:
                    first.append(c.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue, idempotency_key=key).id)
                except Exception as exc:  # noqa: BLE001 - the scheduler dies under it
                    first.append(exc)

        registry.send_signal(signal.SIGSTOP)
        try:
            thread = threading.Thread(target=submit_first, daemon=True)
            thread.start()
            held = _held(r, key)
            time.sleep(0.5)  # the scheduler's Enqueue is on its way to the stopped registry
            rig.cluster.kill("scheduler")
        finally:
            registry.send_signal(signal.SIGCONT)
        written = held.removeprefix(PENDING)
        rig.cluster.start("scheduler")
        restarted = time.monotonic()
        refused = 0
        while True:
            try:
                handle = rig.client.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue, idempotency_key=key)
                break
            except Exception:  # noqa: BLE001 - counted: a retry refused while the key is pending
                refused += 1
                if time.monotonic() - restarted > 30:
                    raise
                time.sleep(0.2)
        answered = time.monotonic() - restarted
        thread.join(30)
        fig = rig.count(
            f"SIGKILL of the scheduler while the registry (stopped) takes a task submitted under a key, "
            f"restarted; its retry answered in {answered:.1f} s after {refused} refusals",
            [handle.id],
            restarted,
            timeout=HANDOVER_MS / 1000 + 30,
        )
        seen = {t.task_id for t in rig.client.list_tasks(queue=rig.queue, limit=100).tasks}
        r.close()
    assert held, "the scheduler never claimed the key"
    assert handle.id == written, "the retry was admitted as a new task, not answered with the one written"
    assert seen == {handle.id}, f"tasks under one key: {seen}"
    assert [x for x in first if isinstance(x, str) and x != handle.id] == []
    rig.assert_held(fig)
    assert fig.recover_s < HANDOVER_MS / 2000, "the task waited for the delayed set's hand-over deadline"


def test_tasks_due_while_the_registry_is_down_run_soon_after_it_is_back(tmp_path: Path, queue_name: str) -> None:
    """Delayed tasks fall due while the registry is SIGKILLed: the scheduler's pump cannot hand them
    over, and tries again about every second (writing.RETRY_IN_DOUBT_MS) rather than after the
    hand-over deadline (store.HANDOVER_MS, 30 s). Once the registry is back they run within seconds."""
    with make_rig(tmp_path, queue_name) as rig:
        ids = [
            rig.client.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue, countdown=1.0).id for _ in range(20)
        ]
        rig.cluster.kill("registry")
        time.sleep(2.5)  # due, and the pump's hand-overs fail
        rig.cluster.start("registry")
        back = time.monotonic()
        fig = rig.count("delayed tasks due while the registry was down (SIGKILL), restarted", ids, back, timeout=20)
    rig.assert_held(fig)
    assert fig.recover_s < HANDOVER_MS / 2000, "the due tasks waited for their hand-over deadline"


def test_a_stopped_registry_fails_a_submission_in_time_and_keeps_its_task(tmp_path: Path, queue_name: str) -> None:
    """The registry SIGSTOPped (a frozen process or host): a submission under a key is answered
    UNAVAILABLE once the scheduler's Enqueue call has waited ENQUEUE_TIMEOUT, instead of waiting as
    long as the registry does. Its retry, after the registry resumes, is answered with the same
    task, which runs once."""
    key = f"{queue_name}-frozen"
    with make_rig(tmp_path, queue_name) as rig:
        r = redis.Redis.from_url(rig.redis.url)
        registry = rig.cluster.procs["registry"]
        registry.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable, match="did not answer"):
                rig.client.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue, idempotency_key=key)
            waited = time.monotonic() - started
            held = (r.get(keys.idem(key)) or b"").decode()
        finally:
            registry.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        handle = rig.client.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue, idempotency_key=key)
        fig = rig.count(
            f"the registry SIGSTOPped; a keyed submission answered UNAVAILABLE in {waited:.1f} s", [handle.id], resumed
        )
        r.close()
    assert waited < ENQUEUE_TIMEOUT + 5
    assert handle.id == held, "the retry was not answered with the task kept"
    rig.assert_held(fig)


def test_outcomes_wait_out_a_results_service_down_longer_than_their_leases(tmp_path: Path, queue_name: str) -> None:
    """The results service SIGKILLed while tasks run, for 12 s (the leases last 3 s): the registry
    cannot record their outcomes. It keeps trying while the workers' sessions last and keeps the
    leases meanwhile, so no task is handed out again; once the service is back, every result is
    recorded. (Before, the registry gave up after 8 attempts, about 5 s, and the leases expired:
    the tasks ran again.)"""
    with make_rig(tmp_path, queue_name) as rig:
        rig.cluster.kill("results")
        ids = [rig.client.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue).id for _ in range(20)]
        time.sleep(12)
        rig.cluster.start("results")
        back = time.monotonic()
        fig = rig.count("the results service down (SIGKILL) for 12 s while 20 tasks run", ids, back, timeout=30)
    rig.assert_held(fig)
    assert fig.run_twice == 0, "tasks whose outcomes waited were run again"


def test_a_task_whose_worker_is_lost_while_the_results_service_is_down_goes_back_all_the_same(
    tmp_path: Path, queue_name: str
) -> None:
    """A worker vanishes holding a task while the results service is down (SIGKILL): the reaper
    cannot record that the task waits again, and puts it back in its queue all the same. Once the
    service is back, explain() says the lease expired (the task is still recorded as running), and
    a worker started then runs it once."""
    with make_rig(tmp_path, queue_name, n_workers=0) as rig:
        h = rig.client.submit("t.marked", [str(rig.markers), 0.0], queue=rig.queue)
        raw = RawSession(rig.cluster.addresses["registry"], rig.queue)
        assert raw.next_assignment().task.id == h.id
        running = TaskState.RUNNING.value

        def recorded_running() -> bool:  # by the results service (the status may come from the queue)
            (res,) = rig.client.fetch([h.id])
            return res.found and res.state == running

        eventually(recorded_running, 10)
        rig.cluster.kill("results")
        raw.close()  # the worker vanishes holding its lease (3 s)
        eventually(lambda: [q.ready for q in rig.client.queue_stats() if q.queue == rig.queue] == [1], 20)
        rig.cluster.start("results")

        def explained() -> object:
            try:
                return rig.client.explain(h.id)
            except Unavailable as exc:  # while the scheduler reconnects to the results service
                raise AssertionError(str(exc)) from exc

        why = eventually(explained, 20)
        assert (why.state, why.reason) == (TaskState.RUNNING, "NO_WORKER"), why
        assert why.message.startswith(f"its lease on worker {raw.worker_id} expired"), why.message
        back = time.monotonic()
        rig.workers.spawn(1)
        case = "a worker lost while the results service is down (SIGKILL); its task queued again unrecorded"
        fig = rig.count(case, [h.id], back, timeout=30)
    rig.assert_held(fig)
