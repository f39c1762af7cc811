"""A worker session that ends between the lease of a hand-over and the hand-over itself
(worker/handover.py): the submission's pipeline leased a task for a session with credit, and by the
time the lease is to be given to it the session is gone. The task must run once, on another
session, without waiting for the lease to expire. The same for the other ways a lease can be taken
for a session that does not get it: an assignment left in its outgoing queue, and a `dispatch` call
of its dispatcher still in flight when it ends.

The window is entered on purpose: the hand-over of the submission (scheduler/writing.py,
`PipelineWriter._hand_over`, run once the submission is answered) is held back until the worker
has closed its stream and the registry has let the session go; then it runs as it would have.
Reservation, pipeline and hand-over are the services' own code, on a real Redis and real gRPC.
In-process only, like the hand-over itself (tests/test_handover_paths.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tasktide import Client, TaskHandle
from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.scheduler import writing
from tasktide_services.testing import PlatformThread, client_settings, eventually
from tasktide_services.worker import keys, session, session_state, store
from tests.raw_session import RawSession
from tests.test_handover_paths import AN_HOUR, announced, assignments, report, states, with_credit

RAN = [task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RUNNING, task_pb2.TASK_STATE_SUCCEEDED]
# A lease left to expire: the reaper records the task's submission (the ended session's events of it
# were dropped) and its requeue, then it runs.
REAPED_THEN_RAN = [task_pb2.TASK_STATE_QUEUED, *RAN]


@pytest.fixture()
def client(local: PlatformThread) -> Iterator[Client]:
    with Client(settings=client_settings(local.address)) as c:
        yield c


@pytest.fixture()
def doomed(local: PlatformThread, queue_name: str) -> Iterator[RawSession]:
    """The session that ends. Its channel keeps HTTP/2's initial receive window (no bandwidth
    probe to grow it): what it does not read holds the registry's sends back early."""
    s = RawSession(local.address, queue_name, credit=1, options=[("grpc.http2.bdp_probe", 0)])
    yield s
    s.close()


@pytest.fixture()
def other(local: PlatformThread, queue_name: str) -> Iterator[RawSession]:
    """A second session of the queue, with no credit until the test gives it some (so that the
    hand-over cannot pick it)."""
    s = RawSession(local.address, queue_name, credit=0)
    yield s
    s.close()


@contextlib.contextmanager
def session_ends_before_hand_over(
    monkeypatch: pytest.MonkeyPatch, session: RawSession, meanwhile: Callable[[], None]
) -> Iterator[list[BaseException]]:
    """The next hand-over that reserved credit of `session` waits: `meanwhile()` is called, the
    session's worker closes its stream, and once the registry has let the session go the
    hand-over goes on as it would have, with its reservation and its pipeline's replies. Yields
    the errors of that wait (checked empty at the end of the block)."""
    original = writing.PipelineWriter._hand_over  # noqa: SLF001 - the point where the window opens
    held: set[asyncio.Future[None]] = set()
    errors: list[BaseException] = []

    def deferred(self: writing.PipelineWriter, handover: Any, replies: list[Any]) -> None:
        ours = [s for s, _ in handover.reserved.values() if s.hello.worker_id == session.worker_id]
        if not ours or held:
            original(self, handover, replies)
            return
        registry = handover.registry

        async def after_the_end() -> None:
            meanwhile()
            await asyncio.get_running_loop().run_in_executor(None, session.close)
            while ours[0].id in registry.sessions:  # the registry's own view: the session ended
                await asyncio.sleep(0.005)
            original(self, handover, replies)

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                errors.append(f.exception())  # type: ignore[arg-type]

        wait = asyncio.ensure_future(after_the_end())
        wait.add_done_callback(done)
        held.add(wait)

    monkeypatch.setattr(writing.PipelineWriter, "_hand_over", deferred)
    yield errors
    eventually(lambda: held and all(f.done() for f in held), what="the held hand-over")
    assert errors == []


def credit(s: RawSession, n: int) -> Callable[[], None]:
    return lambda: s.send(worker_pb2.WorkerMessage(credit=n))


def test_a_task_leased_for_a_session_that_ends_before_its_hand_over_runs_at_once_elsewhere(
    local, client, doomed, other, redis_server, queue_name, monkeypatch
):
    """The lease taken in the submission's pipeline is given back at once (not left to expire):
    the task runs on the other session as its first delivery, once, and the other session's
    credit comes back with its outcome."""
    with_credit(doomed, client, queue_name, 1)
    with (
        session_ends_before_hand_over(monkeypatch, doomed, credit(other, 1)),
        announced(redis_server.url, queue_name) as woken,
    ):
        submitted = time.monotonic()
        h = client.submit("t.add", [2, 3], queue=queue_name)
        (a,) = assignments(other)
        took = time.monotonic() - submitted
    print(f"submission to the other session's assignment: {took * 1000:.1f} ms")
    assert a.task.id == h.id
    # Leased in the pipeline, so not announced; announced once when its lease was given back.
    assert woken == [queue_name]
    # Given back, the delivery does not count; a lease left to expire would make this delivery 2.
    assert a.delivery == 1
    report(other, [a], 1)
    assert h.get(timeout=20) == 5
    assert states(client, h.id) == RAN  # recorded once
    running = [e for e in client.watch([h.id]) if e.state == task_pb2.TASK_STATE_RUNNING]
    assert [e.worker_id for e in running] == [other.worker_id]

    # The other session's credit came back with the outcome: the next task goes to it, and nothing
    # of the ended session's lease is left.
    later = client.submit("t.add", [4, 4], queue=queue_name)
    (b,) = assignments(other)
    assert (b.task.id, b.delivery) == (later.id, 1)
    report(other, [b], 0)
    assert later.get(timeout=20) == 8
    r = redis.Redis.from_url(redis_server.url)
    try:
        q = keys.queue_keys(queue_name)
        assert r.zcard(q.leases) == 0 and r.zcard(q.ready) == 0
    finally:
        r.close()


def test_a_lease_that_cannot_be_given_back_expires_and_its_task_runs_once(
    local, client, doomed, other, redis_server, queue_name, monkeypatch, caplog
):
    """Redis refuses the release (the queue's lease tokens are not a hash for a moment): the
    failure is logged, the submission stands, and the lease runs out as it would have without
    the release: the task then runs on the other session, as its second delivery, once."""
    with_credit(doomed, client, queue_name, 1)
    q = keys.queue_keys(queue_name)
    r = redis.Redis.from_url(redis_server.url)
    kept = f"{q.tokens}-kept-{uuid.uuid4().hex[:6]}"

    def poison() -> None:
        r.rename(q.tokens, kept)
        r.set(q.tokens, "not a hash")

    try:
        with caplog.at_level(logging.ERROR, logger="tasktide.registry"):
            with session_ends_before_hand_over(monkeypatch, doomed, poison):
                h = client.submit("t.add", [3, 4], queue=queue_name)
                eventually(
                    lambda: any("handing tasks of queue" in rec.getMessage() for rec in caplog.records),
                    what="the failed release logged",
                )
        r.delete(q.tokens)
        r.rename(kept, q.tokens)
        assert r.zscore(q.leases, h.id) is not None  # still leased: it waits for its lease to expire
        other.send(worker_pb2.WorkerMessage(credit=1))
        (a,) = assignments(other)
        assert (a.task.id, a.delivery) == (h.id, 2)
        report(other, [a], 0)
        assert h.get(timeout=20) == 7
        assert states(client, h.id) == REAPED_THEN_RAN
    finally:
        r.delete(kept)
        r.close()


BIG = "x" * 900_000  # an argument near the payload limit, far more than a stream's initial window


def queued_unsent(
    client: Client,
    doomed: RawSession,
    redis_url: str,
    queue: str,
    monkeypatch: pytest.MonkeyPatch,
    linger: float = AN_HOUR,
) -> tuple[TaskHandle, TaskHandle]:
    """A large task and a small one, given to `doomed` in that order, the small one by a hand-over.
    The worker reads nothing more, so the large assignment fills its stream's window and the
    small one waits in the session's outgoing queue: sent to no one. Their started events wait
    `linger` for an outcome (none comes; by default what the session records of them is what it
    holds when it ends)."""
    with_credit(doomed, client, queue, 2)
    monkeypatch.setattr(session_state, "STARTED_LINGER", linger)
    # A submission's tasks go to the session before its answer is sent (the hand-over is
    # scheduled first), so before the worker can react to the answer.
    big = client.submit("t.echo", [BIG], queue=queue)
    with announced(redis_url, queue) as woken:
        small = client.submit("t.add", [2, 3], queue=queue)
    assert woken == []  # leased in the submission's pipeline: the hand-over's way
    return big, small


def ended(client: Client, s: RawSession) -> None:
    s.close()
    eventually(lambda: s.worker_id not in {w.worker_id for w in client.workers()}, what="the session ended")


def test_a_task_handed_to_a_session_whose_stream_ends_before_it_was_sent_runs_at_once_elsewhere(
    local, client, doomed, other, redis_server, queue_name, monkeypatch
):
    """The session ends with the hand-over's assignment still in its outgoing queue. That
    assignment never reached the worker: its lease is given back as the session ends, and the
    task runs on the other session as its first delivery, once, with nothing recorded of the
    session that ended. The large one, which went out (in part), keeps its lease until it
    expires, and then runs once elsewhere too."""
    big, small = queued_unsent(client, doomed, redis_server.url, queue_name, monkeypatch)
    ended(client, doomed)
    other.send(worker_pb2.WorkerMessage(credit=2))
    sent = assignments(other)  # the large one's lease has not expired yet
    # Given back unsent, its delivery does not count; a lease left to expire would make it 2.
    assert [(x.task.id, x.delivery) for x in sent] == [(small.id, 1)]
    a = sent[0]
    report(other, [a], 0)
    assert small.get(timeout=20) == 5
    assert states(client, small.id) == RAN  # recorded once, all of it by the other session
    running = [e for e in client.watch([small.id]) if e.state == task_pb2.TASK_STATE_RUNNING]
    assert [e.worker_id for e in running] == [other.worker_id]

    (b,) = assignments(other)
    assert (b.task.id, b.delivery) == (big.id, 2)  # sent, so left to its lease
    other.succeed(b, "done")
    assert big.get(timeout=20) == "done"


def test_an_unsent_task_whose_start_was_recorded_is_recorded_queued_again(
    local, client, doomed, other, redis_server, queue_name, monkeypatch
):
    """The session recorded the unsent task's RUNNING event before it ended (its events did not
    wait for an outcome): given back, the task is recorded QUEUED, then runs once elsewhere."""
    usual = session_state.STARTED_LINGER
    big, small = queued_unsent(client, doomed, redis_server.url, queue_name, monkeypatch, usual)
    eventually(lambda: client.fetch([small.id])[0].state == task_pb2.TASK_STATE_RUNNING, what="RUNNING recorded")
    ended(client, doomed)
    assert client.fetch([small.id])[0].state == task_pb2.TASK_STATE_QUEUED
    other.send(worker_pb2.WorkerMessage(credit=1))
    sent = assignments(other)
    assert [(x.task.id, x.delivery) for x in sent] == [(small.id, 1)]
    report(other, sent, 0)
    assert small.get(timeout=20) == 5
    running = [e.worker_id for e in client.watch([small.id]) if e.state == task_pb2.TASK_STATE_RUNNING]
    assert running == [doomed.worker_id, other.worker_id]  # the first recorded as given to the session that ended


def test_an_unsent_lease_that_cannot_be_given_back_expires_and_its_task_runs_once(
    local, client, doomed, other, redis_server, queue_name, monkeypatch, caplog
):
    """Redis refuses the release as the session ends (the queue's lease tokens are not a hash for
    a moment): the failure is logged, the session still ends, and the unsent task's lease runs
    out as it would have without the release; the task then runs once elsewhere."""
    big, small = queued_unsent(client, doomed, redis_server.url, queue_name, monkeypatch)
    q = keys.queue_keys(queue_name)
    r = redis.Redis.from_url(redis_server.url)
    kept = f"{q.tokens}-kept-{uuid.uuid4().hex[:6]}"
    try:
        r.rename(q.tokens, kept)
        r.set(q.tokens, "not a hash")
        with caplog.at_level(logging.WARNING, logger="tasktide.registry"):
            ended(client, doomed)
            assert any("giving back 1 unsent leases failed" in rec.getMessage() for rec in caplog.records)
        r.delete(q.tokens)
        r.rename(kept, q.tokens)
        assert r.zscore(q.leases, small.id) is not None  # still leased: it waits for its lease to expire
        other.send(worker_pb2.WorkerMessage(credit=2))
        got: dict[str, worker_pb2.Assignment] = {}
        while len(got) < 2:
            got.update((x.task.id, x) for x in assignments(other))
        assert (got[small.id].delivery, got[big.id].delivery) == (2, 2)
        report(other, [got[small.id]], 0)
        other.succeed(got[big.id], "done")
        assert (small.get(timeout=20), big.get(timeout=20)) == (5, "done")
        assert states(client, small.id) == REAPED_THEN_RAN
    finally:
        r.delete(kept)
        r.close()


def test_a_task_leased_by_a_dispatch_call_in_flight_as_the_session_ends_runs_at_once_elsewhere(
    local, client, doomed, other, queue_name, monkeypatch
):
    """The session's dispatcher leases a task and the session ends before Redis's answer is back:
    the ending cancels the dispatcher, not the call, and the lease it answers goes back at once.
    The task runs on the other session as its first delivery, once."""
    with_credit(doomed, client, queue_name, 1)
    client.pause_queue(queue_name)  # the task waits in the ready set: the dispatcher's way
    h = client.submit("t.add", [2, 3], queue=queue_name)
    steps: list[asyncio.Task[Any]] = []  # the doomed session's dispatcher, at each of its steps
    holding = threading.Event()
    original_step = session.SessionLoops._dispatch_step  # noqa: SLF001
    original_dispatch = store.RegistryStore.dispatch

    async def step(self: session.SessionLoops, s: session_state.Session, *rest: Any) -> None:
        if s.hello.worker_id == doomed.worker_id:
            steps.append(asyncio.current_task())  # type: ignore[arg-type]
        await original_step(self, s, *rest)

    async def dispatch(self: store.RegistryStore, queue: str, now: int, lease_ms: int, count: int) -> Any:
        got = await original_dispatch(self, queue, now, lease_ms, count)
        if queue == queue_name and got and not holding.is_set():
            holding.set()
            await asyncio.get_running_loop().run_in_executor(None, doomed.close)
            dispatcher = steps[-1]
            while not (dispatcher.cancelling() or dispatcher.done()):  # the session ended
                await asyncio.sleep(0.005)
        return got

    monkeypatch.setattr(session.SessionLoops, "_dispatch_step", step)
    monkeypatch.setattr(store.RegistryStore, "dispatch", dispatch)
    resumed = time.monotonic()
    client.resume_queue(queue_name)
    assert holding.wait(20), "the dispatcher did not lease the task"
    other.send(worker_pb2.WorkerMessage(credit=1))
    (a,) = assignments(other)
    took = time.monotonic() - resumed
    print(f"resume to the other session's assignment: {took * 1000:.1f} ms")
    # Given back, the delivery does not count; a lease left to expire would make this delivery 2.
    assert (a.task.id, a.delivery) == (h.id, 1)
    report(other, [a], 0)
    assert h.get(timeout=20) == 5
    assert states(client, h.id) == RAN
