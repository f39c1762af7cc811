"""Scheduling and execution control: priorities, queues, delays, expiry, retries, dead letters,
time limits, cancellation, rate limits, pools, progress, explain, pause."""

from __future__ import annotations

import datetime as dt
import os
import queue as queue_mod
import time

import pytest

import tasktide
from tasktide import TaskState
from tasktide.v1 import task_pb2
from tasktide_services.testing import TEST_LEASE_SECONDS, eventually, run_worker_thread
from tests.processes import process_gone
from tests.tasks_app import app


def spec(name: str, *args, **opts):
    return app.tasks[name].spec(list(args), **opts)


def submit(client, name: str, *args, **opts) -> tasktide.TaskHandle:
    return client.submit_spec(spec(name, *args, **opts))


def states(client, task_id):
    return [TaskState.from_proto(e.state) for e in client.watch([task_id]) if not e.progress_only]


def queue_stat(client, queue):
    return next((s for s in client.queue_stats() if s.queue == queue), None)


def test_priority_is_strict_within_a_queue(platform, client, queue_name, tmp_path):
    path = str(tmp_path / "order")
    for i in range(5):
        submit(client, "t.record", path, f"low{i}", queue=queue_name, priority=-10)
    submit(client, "t.record", path, "mid", queue=queue_name, priority=0)
    last = submit(client, "t.record", path, "high", queue=queue_name, priority=90)
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=1, prefetch=1) as w:
        eventually(lambda: w.completed == 7)
    assert open(path).read().split() == ["high", "mid", "low0", "low1", "low2", "low3", "low4"]
    assert last.status() is TaskState.SUCCEEDED


def test_workers_consume_only_their_queues(platform, client, queue_name):
    other = queue_name + "-other"
    mine = submit(client, "t.add", 1, 1, queue=queue_name)
    theirs = submit(client, "t.add", 2, 2, queue=other)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert mine.get(timeout=10) == 2
        assert theirs.status() is TaskState.QUEUED
        e = theirs.explain()
        assert e.reason == "NO_WORKER" and other in e.message
    with run_worker_thread(app, platform.address, queues=(other, queue_name)):
        assert theirs.get(timeout=10) == 4


def test_eta_is_held_on_the_server(platform, client, queue_name):
    # An ETA an hour away is still ahead when Explain answers, however loaded the machine.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    far = submit(client, "t.add", 1, 2, queue=queue_name, eta=later)
    assert far.status() is TaskState.SCHEDULED
    e = far.explain()
    assert e.reason == "ETA" and abs((e.eta - later).total_seconds()) < 0.01
    assert far.cancel() is TaskState.CANCELLED
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.6)
    h = submit(client, "t.add", 1, 2, queue=queue_name, eta=eta)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=10) == 3
    assert states(client, h.id) == [TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED]
    finished = client.fetch([h.id])[0].updated_ms
    assert finished >= eta.timestamp() * 1000


def test_delay_longer_than_the_lease_runs_exactly_once(platform, client, queue_name, tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    h = submit(client, "t.slow", 0.0, str(markers), queue=queue_name, countdown=TEST_LEASE_SECONDS + 1)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=20) == "slept 0.0"
        # Nothing is left that could run it again: no lease, nothing ready, no longer delayed.
        stat = eventually(lambda: queue_stat(client, queue_name))
        assert (stat.leased, stat.ready) == (0, 0)
        assert h.explain().reason == "FINISHED"
    assert len(list(markers.iterdir())) == 1
    assert states(client, h.id).count(TaskState.SUCCEEDED) == 1


def test_expired_task_is_never_run(platform, client, queue_name, tmp_path):
    path = str(tmp_path / "ran")
    h = submit(client, "t.record", path, "should not run", queue=queue_name, expires=0.2)
    time.sleep(0.3)  # the expiry passes before any worker exists
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        with pytest.raises(tasktide.TaskExpired):
            h.get(timeout=10)
    assert h.status() is TaskState.EXPIRED
    assert not os.path.exists(path)


def test_autoretry_for_retries_and_records_each_attempt(platform, client, queue_name, tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.picky", "connection", str(d), queue=queue_name)
        assert h.get(timeout=10) == "ok after 3"
    events = [e for e in client.watch([h.id]) if e.state == task_pb2.TASK_STATE_RETRYING]
    assert [e.attempt for e in events] == [0, 1]
    assert [e.error.message for e in events] == ["attempt 1 lost the connection", "attempt 2 lost the connection"]
    assert all(e.error.type == "ConnectionError" for e in events)


@pytest.mark.parametrize("kind", ["permission", "value"])
def test_dont_autoretry_for_and_unlisted_errors_fail_at_once(platform, client, queue_name, tmp_path, kind):
    d = tmp_path / "a"
    d.mkdir()
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.picky", kind, str(d), queue=queue_name)
        with pytest.raises(tasktide.TaskFailed):
            h.get(timeout=10)
    assert len(list(d.iterdir())) == 1
    assert TaskState.RETRYING not in states(client, h.id)


def test_explicit_retry_with_its_own_countdown(platform, client, queue_name, tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.explicit_retry", str(d), queue=queue_name)
        assert h.get(timeout=10) == 2
    evs = [e for e in client.watch([h.id]) if not e.progress_only]
    retrying = [e.at_ms for e in evs if e.state == task_pb2.TASK_STATE_RETRYING]
    running = [e.at_ms for e in evs if e.state == task_pb2.TASK_STATE_RUNNING]
    assert len(retrying) == 2 and len(running) == 3
    assert running[1] - retrying[0] >= 300 and running[2] - retrying[1] >= 300


def test_exhausted_retries_go_to_dead_letters_and_can_be_requeued(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.always_fails", "broken", queue=queue_name)
        with pytest.raises(tasktide.TaskDead) as info:
            h.get(timeout=10)
        assert info.value.remote_type == "RuntimeError"
        # The final event is recorded before the task joins the dead letters (outcomes.py: record,
        # then end the lease), so a caller woken by the event may look a moment too early.
        dead_ids = lambda: [d.task_id for d in client.dead_letters(queue_name)]  # noqa: E731
        eventually(lambda: dead_ids() == [h.id], what="the task among the dead letters")
        assert client.requeue_dead(queue_name) == 1
        eventually(lambda: h.status() is TaskState.DEAD)
        eventually(lambda: dead_ids() == [h.id], what="the task among the dead letters again")
    assert states(client, h.id).count(TaskState.DEAD) == 2  # dead, requeued, dead again


def test_a_task_raising_system_exit_fails_and_its_thread_runs_the_next(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=1):
        h = submit(client, "t.exits", 3, queue=queue_name)
        with pytest.raises(tasktide.TaskFailed) as info:
            h.get(timeout=10)
        assert info.value.remote_type == "SystemExit"
        assert submit(client, "t.add", 2, 2, queue=queue_name).get(timeout=10) == 4  # the one thread goes on


def test_task_that_kills_its_worker_goes_to_dead_letters(platform, client, queue_name):
    """Sessions that take the task and vanish without a heartbeat, max_deliveries times."""
    import threading

    import grpc

    from tasktide.v1 import worker_pb2, worker_pb2_grpc

    h = submit(client, "t.add", 1, 1, queue=queue_name)
    for delivery in range(1, 4):
        ch = grpc.insecure_channel(platform.registry_address)
        dead = threading.Event()

        def messages(n=delivery, dead=dead):
            yield worker_pb2.WorkerMessage(hello=worker_pb2.Hello(worker_id=f"doomed-{n}", queues=[queue_name]))
            yield worker_pb2.WorkerMessage(credit=1)
            dead.wait(30)

        stream = worker_pb2_grpc.RegistryStub(ch).Session(messages(), timeout=TEST_LEASE_SECONDS * 3)
        got = next(m for m in stream if m.WhichOneof("kind") == "assignments")
        assert got.assignments.assignments[0].delivery == delivery
        dead.set()
        ch.close()  # the worker dies holding the lease
        if delivery == 1:  # queued again once its lease expired, and recorded so
            why = eventually(lambda: (e := h.explain()).reason == "NO_WORKER" and e, timeout=TEST_LEASE_SECONDS * 3)
            assert (why.state, why.message) == (TaskState.QUEUED, f"no worker consumes queue {queue_name!r}")
    with pytest.raises(tasktide.TaskDead) as info:
        h.get(timeout=TEST_LEASE_SECONDS * 3)
    assert info.value.remote_type == "tasktide.WorkerLost"
    assert h.id in [d.task_id for d in client.dead_letters(queue_name)]
    # The timeline: submitted once; each delivery, and each expired lease before the next one.
    events = [e for e in client.watch([h.id]) if not e.progress_only]
    Q, R = TaskState.QUEUED, TaskState.RUNNING
    assert [TaskState.from_proto(e.state) for e in events] == [Q, R, Q, R, Q, R, TaskState.DEAD]
    assert events[0].spec.name == "t.add"
    assert [e.worker_id for e in events[1::2][:3]] == ["doomed-1", "doomed-2", "doomed-3"]
    expired = "the lease of delivery {} expired (its worker was lost or stopped); queued again"
    assert [e.message for e in events[2:6:2]] == [expired.format(1), expired.format(2)]
    assert [e.message for e in events[1::2][:3]] == [
        "",
        "delivery 2: the lease of delivery 1 expired",
        "delivery 3: the lease of delivery 2 expired",
    ]


class GivingBack:
    """A raw worker session (no worker runtime) that takes one task of `queue` and, when told,
    gives it back unstarted, as a worker does at a graceful stop with tasks prefetched."""

    def __init__(self, platform, queue: str, worker_id: str) -> None:
        import grpc

        from tasktide.v1 import worker_pb2, worker_pb2_grpc

        self._ref = worker_pb2.LeaseRef
        self._queue = queue
        self._taken: queue_mod.Queue[worker_pb2.LeaseRef] = queue_mod.Queue()

        def messages():
            yield worker_pb2.WorkerMessage(hello=worker_pb2.Hello(worker_id=worker_id, queues=[queue]))
            yield worker_pb2.WorkerMessage(credit=1)
            yield worker_pb2.WorkerMessage(release=worker_pb2.Release(leases=[self._taken.get(timeout=20)]))

        self._channel = grpc.insecure_channel(platform.registry_address)
        self._stream = worker_pb2_grpc.RegistryStub(self._channel).Session(messages(), timeout=20)  # kept open
        first = next(m for m in self._stream if m.WhichOneof("kind") == "assignments")
        self.assignment = first.assignments.assignments[0]

    def give_back(self) -> None:
        a = self.assignment
        self._taken.put(self._ref(task_id=a.task.id, queue=self._queue, lease_token=a.lease_token))

    def __enter__(self) -> GivingBack:
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()


def test_a_task_given_back_unstarted_says_so_in_its_timeline(platform, client, queue_name):
    """A worker that takes a task and gives it back (as at a graceful stop with tasks prefetched):
    the timeline says so, and the next delivery is the first again, with no second submission."""
    h = submit(client, "t.add", 2, 3, queue=queue_name)
    with GivingBack(platform, queue_name, "giver") as giver:
        giver.give_back()
        eventually(lambda: getattr(queue_stat(client, queue_name), "ready", 0) == 1)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=10) == 5
    events = [e for e in client.watch([h.id]) if not e.progress_only]
    assert [TaskState.from_proto(e.state) for e in events] == [
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.SUCCEEDED,
    ]
    assert events[0].spec.name == "t.add"
    assert events[1].worker_id == "giver" and events[3].worker_id not in ("", "giver")
    assert events[2].message == "given back unstarted by worker giver"
    assert events[3].message == ""  # a delivery given back does not count: this one is the first again


def _doomed_session(platform, queue: str, worker_id: str):
    """A raw worker session that takes one task and gives nothing back: (its assignment, a call
    that ends it as a lost worker does, its stream closed with the lease held)."""
    import threading

    import grpc

    from tasktide.v1 import worker_pb2, worker_pb2_grpc

    ch = grpc.insecure_channel(platform.registry_address)
    gone = threading.Event()

    def messages():
        yield worker_pb2.WorkerMessage(hello=worker_pb2.Hello(worker_id=worker_id, queues=[queue]))
        yield worker_pb2.WorkerMessage(credit=1)
        gone.wait(30)

    stream = worker_pb2_grpc.RegistryStub(ch).Session(messages(), timeout=TEST_LEASE_SECONDS * 3)
    assignment = next(m for m in stream if m.WhichOneof("kind") == "assignments").assignments.assignments[0]

    def lose() -> None:
        gone.set()
        ch.close()

    return assignment, lose


def test_a_task_cancelled_while_its_worker_is_lost_is_not_run_again(platform, client, queue_name, tmp_path):
    """The Cancel's signal reaches no one (the worker is gone); once the lease expires the reaper
    ends the task CANCELLED instead of queueing it again, and a worker that comes never runs it."""
    path = tmp_path / "ran"
    h = submit(client, "t.record", str(path), "x", queue=queue_name)
    _, lose = _doomed_session(platform, queue_name, "lost")
    lose()
    assert h.cancel() is TaskState.RUNNING  # signalled: the registry has it leased
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        with pytest.raises(tasktide.TaskCancelled) as info:
            h.get(timeout=TEST_LEASE_SECONDS * 4)
        time.sleep(TEST_LEASE_SECONDS)  # a redelivery would run now
    assert not path.exists(), "a cancelled task ran again"
    assert info.value.remote_type == "tasktide.CancelRequested"
    assert "its worker was lost or stopped before the Cancel reached it" in str(info.value)
    assert states(client, h.id) == [TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCELLED]
    assert getattr(queue_stat(client, queue_name), "leased", 0) == 0


def test_a_cancel_whose_signal_was_missed_reaches_the_worker_at_its_next_heartbeat(
    platform, client, queue_name, tmp_path, redis_server
):
    """The Cancel kept with the lease (revoke, without its pub/sub signal: as a registry replica cut
    off from Redis at that moment misses it) is sent to the worker by its next heartbeat."""
    import asyncio

    from redis.asyncio import Redis

    from tasktide_services.worker.store import RegistryStore

    async def revoke_unsignalled(task_id: str) -> list[int]:
        redis = Redis.from_url(redis_server.url)
        try:
            return list(await RegistryStore(redis).revoke(queue_name, [task_id], 5.0))
        finally:
            await redis.aclose()

    marker = tmp_path / "started"
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.cooperative", 60.0, str(marker), queue=queue_name)
        eventually(marker.exists)
        assert asyncio.run(revoke_unsignalled(h.id)) == [2]  # leased: kept, and no signal sent
        with pytest.raises(tasktide.TaskCancelled) as info:
            h.get(timeout=TEST_LEASE_SECONDS * 3)
    assert info.value.remote_type == "tasktide.CancelRequested"


def test_a_task_given_back_unstarted_after_a_cancel_it_did_not_hear_ends_cancelled(platform, client, queue_name):
    """A worker that ignores the signal and gives the task back unstarted (as a worker draining
    with tasks prefetched): the task ends CANCELLED, not queued again."""
    h = submit(client, "t.add", 2, 3, queue=queue_name)
    with GivingBack(platform, queue_name, "deaf") as deaf:
        eventually(lambda: h.status() is TaskState.RUNNING)
        assert h.cancel() is TaskState.RUNNING
        deaf.give_back()
        with pytest.raises(tasktide.TaskCancelled) as info:
            h.get(timeout=10)
    assert "given back unstarted by worker deaf" in str(info.value)
    assert states(client, h.id) == [TaskState.QUEUED, TaskState.RUNNING, TaskState.CANCELLED]
    stat = queue_stat(client, queue_name)
    assert (getattr(stat, "ready", 0), getattr(stat, "leased", 0)) == (0, 0)


def test_soft_time_limit_raises_inside_the_task(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.soft_limited", 5.0, queue=queue_name, soft_time_limit=0.2)
        assert h.get(timeout=10) == "cleaned up after the soft limit"


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_hard_time_limit_stops_the_task(platform, client, queue_name, pool, tmp_path):
    pid_file = tmp_path / "pid"
    config = {"queues": (queue_name,), "pool": pool, "app_target": "tests.tasks_app:app", "concurrency": 1}
    with run_worker_thread(app, platform.address, **config):
        h = submit(client, "t.spin", 30.0, str(pid_file), queue=queue_name, time_limit=0.5)
        with pytest.raises(tasktide.TaskFailed) as info:
            h.get(timeout=15)  # well before the 30 s the task would spin
        assert info.value.remote_type == "tasktide.TimeLimitExceeded"
        if pool == "processes":
            child = int(pid_file.read_text())
            assert child != os.getpid()
            eventually(lambda: process_gone(child))
            assert submit(client, "t.add", 2, 2, queue=queue_name).get(timeout=15) == 4  # a fresh child serves


def test_hard_time_limit_cancels_an_asyncio_task(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,), pool="asyncio"):
        h = submit(client, "t.async_sleep", 30.0, queue=queue_name, time_limit=0.3)
        with pytest.raises(tasktide.TaskFailed) as info:
            h.get(timeout=10)
    assert info.value.remote_type == "tasktide.TimeLimitExceeded"


def test_cancel_queued_and_delayed_tasks(platform, client, queue_name, tmp_path):
    path = str(tmp_path / "ran")
    queued = submit(client, "t.record", path, "queued", queue=queue_name)
    delayed = submit(client, "t.record", path, "delayed", queue=queue_name, countdown=0.5)
    assert queued.cancel() is TaskState.CANCELLED
    assert delayed.cancel() is TaskState.CANCELLED
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        ok = submit(client, "t.add", 1, 1, queue=queue_name)
        assert ok.get(timeout=10) == 2
        # Due after the cancelled one: once it has run, the cancelled one's time has come and gone.
        later = submit(client, "t.add", 2, 2, queue=queue_name, countdown=0.5)
        assert later.get(timeout=10) == 4
    with pytest.raises(tasktide.TaskCancelled):
        queued.get(timeout=1)
    assert delayed.status() is TaskState.CANCELLED
    assert not os.path.exists(path)


def test_cancel_running_task_cooperatively(platform, client, queue_name, tmp_path):
    marker = tmp_path / "started"
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.cooperative", 30.0, str(marker), queue=queue_name)
        eventually(marker.exists)
        assert h.cancel() is TaskState.RUNNING  # signalled; the worker reports CANCELLED
        with pytest.raises(tasktide.TaskCancelled) as info:
            h.get(timeout=10)
    assert info.value.remote_type == "tasktide.CancelRequested"


def test_a_retry_asked_after_a_cancel_is_not_run(platform, client, queue_name, tmp_path):
    """A task cancelled while it runs, that does not heed the signal and asks for a retry: it ends
    CANCELLED, and no next attempt runs."""
    d, go = tmp_path / "attempts", tmp_path / "go"
    d.mkdir()
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.retries_when_told", str(d), str(go), queue=queue_name)
        eventually(lambda: any(d.iterdir()))
        assert h.cancel() is TaskState.RUNNING
        go.touch()
        with pytest.raises(tasktide.TaskCancelled) as info:
            h.get(timeout=10)
        time.sleep(1.0)  # the retry's countdown (0.2 s) is long over: a next attempt would have run
    assert len(list(d.iterdir())) == 1
    assert "the retry that attempt asked for is not run" in str(info.value)
    assert states(client, h.id)[-2:] == [TaskState.RETRYING, TaskState.CANCELLED]
    assert h.status() is TaskState.CANCELLED


def test_explain_says_a_cancel_was_asked_of_a_task_that_runs_on(platform, client, queue_name, tmp_path):
    """A task that does not heed its Cancel runs on until its worker stops it: explain says the
    Cancel was asked, and stops saying it once the task ended CANCELLED."""
    d, go = tmp_path / "attempts", tmp_path / "go"
    d.mkdir()
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.retries_when_told", str(d), str(go), queue=queue_name)
        eventually(lambda: any(d.iterdir()))
        before = h.explain()
        assert h.cancel() is TaskState.RUNNING
        why = h.explain()
        go.touch()
        with pytest.raises(tasktide.TaskCancelled):
            h.get(timeout=10)
        after = h.explain()
    assert (before.reason, before.cancel_asked) == ("RUNNING", False)
    assert "cancel" not in before.message
    assert (why.reason, why.cancel_asked) == ("RUNNING", True)
    assert "a cancel was asked" in why.message, why.message
    assert (after.reason, after.cancel_asked) == ("FINISHED", False)


def test_a_cancel_asked_while_a_retry_is_parked_is_handed_to_the_scheduler(
    platform, client, queue_name, redis_server, server_settings
):
    """A next attempt the registry has parked (the attempt before asked for a retry) and not yet
    handed to the scheduler is in neither's queue: the Cancel is kept with it, and handed to the
    scheduler with the attempt, which then never runs."""
    import asyncio
    import contextlib
    import dataclasses
    from collections.abc import AsyncIterator

    import redis

    from tasktide.v1 import results_pb2, worker_pb2
    from tasktide_services.common.events import event
    from tasktide_services.common.peers import Peers
    from tasktide_services.common.redis_conn import connect
    from tasktide_services.scheduler import keys as scheduler_keys
    from tasktide_services.worker import keys as registry_keys
    from tasktide_services.worker.outcomes import hand_retries
    from tasktide_services.worker.store import RegistryStore

    settings = dataclasses.replace(
        server_settings,
        scheduler_address=platform.address,
        registry_address=platform.registry_address,
        results_address=platform.results_address,
    )
    h = submit(client, "t.add", 2, 3, queue=queue_name)
    with GivingBack(platform, queue_name, "parker") as held:
        a = held.assignment
        lease = worker_pb2.LeaseRef(task_id=a.task.id, queue=queue_name, lease_token=a.lease_token)
        attempt = task_pb2.Task()
        attempt.CopyFrom(a.task)
        attempt.attempt += 1
        attempt.spec.countdown = 30.0  # held by the scheduler for longer than the test

        @contextlib.asynccontextmanager
        async def registry() -> AsyncIterator[tuple[RegistryStore, Peers]]:  # the registry's side, here
            r = await connect(redis_server.url)
            peers = Peers(settings)
            try:
                yield RegistryStore(r), peers
            finally:
                await peers.close()
                await r.aclose()

        async def park() -> tuple[list[str], list[str]]:  # what the registry does with a retry outcome
            async with registry() as (store, peers):
                queued = event(a.task, task_pb2.TASK_STATE_QUEUED, spec=a.task.spec)
                retrying = event(a.task, task_pb2.TASK_STATE_RETRYING, worker_id="parker")
                await peers.results.Record(results_pb2.RecordRequest(events=[queued, retrying]))
                return await store.retire([(lease, attempt)], int(time.time() * 1000))

        async def hand_over() -> None:
            async with registry() as (store, peers):
                await hand_retries(store, peers, [attempt])

        assert asyncio.run(park()) == ([h.id], [])
        assert h.cancel() is TaskState.RUNNING  # kept with the parked attempt
        asyncio.run(hand_over())
        with pytest.raises(tasktide.TaskCancelled):
            h.get(timeout=10)
    with redis.Redis.from_url(redis_server.url) as r:
        assert r.zscore(scheduler_keys.DELAYED, h.id) is None  # the scheduler let the attempt go
        assert not r.hexists(registry_keys.queue_keys(queue_name).cancel, h.id)  # the Cancel handed on
        assert not r.hexists(registry_keys.queue_keys(queue_name).retrying, h.id)
    assert states(client, h.id)[-1] is TaskState.CANCELLED


def _claimed_for_hand_over(r, task_id: str) -> None:
    """What the pump's claim does to a due delayed task (delayed set -> :moving), with a hand-over
    deadline no pump reaches during a test."""
    from tasktide_services.scheduler import keys as scheduler_keys

    assert r.zrem(scheduler_keys.DELAYED, task_id) == 1
    r.zadd(scheduler_keys.MOVING, {task_id: int(time.time() * 1000) + 60_000})


def test_a_cancel_asked_while_a_due_task_is_handed_to_the_registry_waits_for_it(
    platform, client, queue_name, redis_server
):
    """A due delayed task on its way from the scheduler to the registry (:moving) is in neither's
    queue: the Cancel waits until the registry has it, and removes it there."""
    import threading

    import grpc
    import redis

    from tasktide.v1 import worker_pb2, worker_pb2_grpc
    from tasktide_services.scheduler import keys as scheduler_keys

    h = submit(client, "t.add", 2, 3, queue=queue_name, countdown=60)
    with redis.Redis.from_url(redis_server.url) as r:
        _claimed_for_hand_over(r, h.id)
        answers: queue_mod.Queue[TaskState] = queue_mod.Queue()
        asking = threading.Thread(target=lambda: answers.put(h.cancel()))
        asking.start()
        time.sleep(0.5)
        assert answers.empty()  # waiting for the hand-over to end
        task = task_pb2.Task.FromString(r.get(scheduler_keys.task(h.id)))
        task.state = task_pb2.TASK_STATE_QUEUED
        with grpc.insecure_channel(platform.registry_address) as ch:  # the hand-over ends
            worker_pb2_grpc.RegistryStub(ch).Enqueue(worker_pb2.EnqueueRequest(tasks=[task]), timeout=10)
        r.zrem(scheduler_keys.MOVING, h.id)
        assert answers.get(timeout=10) is TaskState.CANCELLED
        asking.join()
    assert getattr(queue_stat(client, queue_name), "ready", 0) == 0  # removed from the registry's queue
    with pytest.raises(tasktide.TaskCancelled):
        h.get(timeout=10)


@pytest.mark.one_process  # shortens the scheduler's wait in this process
def test_a_cancel_whose_hand_over_does_not_end_is_refused_unavailable(
    platform, client, queue_name, redis_server, monkeypatch
):
    """A task left in :moving (a scheduler lost midway; another hands it over after its deadline):
    the Cancel is answered UNAVAILABLE, to be asked again, and the task is left as it was."""
    import redis

    from tasktide_services.scheduler import keys as scheduler_keys
    from tasktide_services.scheduler import service as scheduler_service

    monkeypatch.setattr(scheduler_service, "HANDOVER_WAIT_SECONDS", 0.3)
    h = submit(client, "t.add", 2, 3, queue=queue_name, countdown=60)
    with redis.Redis.from_url(redis_server.url) as r:
        _claimed_for_hand_over(r, h.id)
        with pytest.raises(tasktide.Unavailable, match="being handed to the registry"):
            h.cancel()
        assert r.zscore(scheduler_keys.MOVING, h.id) is not None
        r.zrem(scheduler_keys.MOVING, h.id)
        r.zadd(scheduler_keys.DELAYED, {h.id: int(time.time() * 1000) + 60_000})
    assert h.cancel() is TaskState.CANCELLED


def test_cancel_a_task_the_worker_holds_but_has_not_started(platform, client, queue_name, tmp_path):
    marker, path = tmp_path / "started", str(tmp_path / "ran")
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=1):
        busy = submit(client, "t.cooperative", 30.0, str(marker), queue=queue_name)
        eventually(marker.exists)
        held = submit(client, "t.record", path, "held", queue=queue_name)
        eventually(lambda: held.status() is TaskState.RUNNING)  # leased to the worker, waiting for its thread
        assert held.cancel() is TaskState.RUNNING  # the worker was told
        busy.cancel()
        with pytest.raises(tasktide.TaskCancelled) as info:
            held.get(timeout=10)
        with pytest.raises(tasktide.TaskCancelled):
            busy.get(timeout=10)
    assert "before it started" in str(info.value)
    assert not os.path.exists(path)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_cancel_running_task_stops_it_hard_after_the_grace_period(platform, client, queue_name, pool, tmp_path):
    pid_file = tmp_path / "pid"
    config = {"queues": (queue_name,), "pool": pool, "app_target": "tests.tasks_app:app", "concurrency": 1}
    with run_worker_thread(app, platform.address, **config):
        h = submit(client, "t.spin", 30.0, str(pid_file), queue=queue_name)
        eventually(pid_file.exists)
        h.cancel()
        with pytest.raises(tasktide.TaskCancelled):
            h.get(timeout=10)  # well before the 30 s the task would spin
    assert h.status() is TaskState.CANCELLED


def test_rate_limit_is_shared_and_spaces_starts(platform, client, queue_name, tmp_path):
    held = [submit(client, "t.rare", queue=f"{queue_name}-held") for _ in range(2)]  # 1/h: the second waits
    why = held[-1].explain()
    assert (why.state, why.reason) == (TaskState.SCHEDULED, "RATE_LIMIT") and why.eta is not None
    for h in held:
        h.cancel()
    path = tmp_path / "starts"
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=4):
        with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=4):
            # Both workers wait for work first: slots count from the submission, so tasks submitted
            # before a worker is there would all be due at once when it arrives.
            consumers = lambda: len([w for w in client.workers() if queue_name in w.queues])  # noqa: E731
            eventually(lambda: consumers() == 2, timeout=30, what="both workers to connect")
            submitted = time.time()
            handles = client.submit_many([spec("t.limited", str(path), queue=queue_name) for _ in range(6)])
            [h.get(timeout=15) for h in handles]
    starts = sorted(float(x) for x in path.read_text().split())
    assert len(starts) == 6
    for k, t in enumerate(starts):  # 5/s: slot k is k * 0.2 s after the submission; 10 ms for clock rounding
        assert t >= submitted + k * 0.2 - 0.01, (k, t - submitted)


def test_process_pool_runs_in_child_processes(platform, client, queue_name):
    config = {"queues": (queue_name,), "pool": "processes", "app_target": "tests.tasks_app:app", "concurrency": 2}
    with run_worker_thread(app, platform.address, **config):
        pids = {submit(client, "t.whoami", queue=queue_name).get(timeout=15) for _ in range(4)}
        assert os.getpid() not in pids
        assert submit(client, "t.with_progress", 3, queue=queue_name).get(timeout=15) == 3


def test_progress_is_streamed_to_watchers(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = submit(client, "t.with_progress", 4, queue=queue_name)
        progress = [(e.progress, e.message) for e in client.watch([h.id]) if e.progress_only]
    assert progress == [(0.25, "step 1 of 4"), (0.5, "step 2 of 4"), (0.75, "step 3 of 4"), (1.0, "step 4 of 4")]


def test_pause_and_resume_a_queue(platform, client, queue_name):
    client.pause_queue(queue_name)
    h = submit(client, "t.add", 3, 4, queue=queue_name)
    other = submit(client, "t.add", 1, 1, queue=queue_name + "-open")
    with run_worker_thread(app, platform.address, queues=(queue_name, queue_name + "-open")):
        assert other.get(timeout=10) == 2  # the worker is taking tasks, from the open queue only
        assert h.status() is TaskState.QUEUED
        assert h.explain().reason == "QUEUE_PAUSED"
        client.resume_queue(queue_name)
        assert h.get(timeout=10) == 7


def test_explain_covers_backoff_running_and_finished(platform, client, queue_name, tmp_path):
    marker = tmp_path / "started"
    with run_worker_thread(app, platform.address, queues=(queue_name,), concurrency=1, prefetch=1):
        busy = submit(client, "t.cooperative", 30.0, str(marker), queue=queue_name)
        eventually(marker.exists)
        assert busy.explain().reason == "RUNNING"
        behind = [submit(client, "t.add", i, i, queue=queue_name) for i in range(3)]
        eventually(lambda: behind[-1].explain().reason == "QUEUED_BEHIND")
        busy.cancel()
        [h.get(timeout=10) for h in behind]
        assert behind[0].explain().reason == "FINISHED"
        h = submit(client, "t.explicit_retry", str(tmp_path), queue=queue_name)
        eventually(lambda: h.explain().reason == "RETRY_BACKOFF")
        assert h.get(timeout=10) == 2


def test_submission_by_name_uses_the_retry_policy_declared_on_the_worker(platform, client, queue_name):
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        h = client.submit("t.always_fails", ["by name"], queue=queue_name)  # no options from the producer
        with pytest.raises(tasktide.TaskDead):
            h.get(timeout=10)
    assert states(client, h.id).count(TaskState.RUNNING) == 2  # max_retries=1 on the worker: two attempts
