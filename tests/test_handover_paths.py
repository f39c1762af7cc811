"""Two paths of a task's way from a submission to a worker session that tests elsewhere cross only
by chance, each driven on purpose through real services and a session driven by hand:

- the hand-over's slower path (worker/handover.py: `finish` instead of `finish_now`), taken when a
  task leased in the submission's own round trip has expired by the time it is handed over;
- the linger of a session's started events (worker/session_state.py: QUEUED and RUNNING wait up to
  STARTED_LINGER for an outcome to be recorded with), cut short by outcomes and set again after.

The hand-over exists only where the scheduler and the registry share a process, so these tests run
the three services in this process whatever TASKTIDE_TEST_SERVICES says (on the session's Redis)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from tasktide import Client, TaskState
from tasktide._spec import build_spec
from tasktide.v1 import task_pb2, worker_pb2
from tasktide_services.testing import PlatformThread, client_settings, eventually
from tasktide_services.worker import keys, session_state
from tests.raw_session import RawSession

LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # an expiry already past when the task is submitted
AN_HOUR = 3600.0  # a linger no test outlives: its timer cannot be what recorded anything


@pytest.fixture()
def client(local: PlatformThread) -> Iterator[Client]:
    with Client(settings=client_settings(local.address)) as c:
        yield c


@pytest.fixture()
def session(local: PlatformThread, queue_name: str) -> Iterator[RawSession]:
    s = RawSession(local.address, queue_name, credit=1)
    yield s
    s.close()


def report(s: RawSession, done: list[worker_pb2.Assignment], credit: int) -> None:
    """The outcomes of `done` (each returns its arguments' sum) in one message, with `credit`."""
    outcomes = [
        task_pb2.Outcome(
            task_id=a.task.id,
            queue=a.task.spec.queue,
            lease_token=a.lease_token,
            attempt=a.task.attempt,
            kind=task_pb2.OUTCOME_KIND_SUCCESS,
            result=task_pb2.Payload(json=json.dumps(sum(json.loads(a.task.spec.args.json))).encode()),
        )
        for a in done
    ]
    s.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.OutcomeBatch(outcomes=outcomes, credit=credit)))


def assignments(s: RawSession) -> list[worker_pb2.Assignment]:
    """The tasks of the session's next assignments message, their leases kept for a while (a
    loaded machine may take longer than the test lease between two steps)."""
    got = list(s._next("assignments").assignments.assignments)  # noqa: SLF001 - the whole message
    leases = [worker_pb2.LeaseRef(task_id=a.task.id, queue=a.task.spec.queue, lease_token=a.lease_token) for a in got]
    s.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(leases=leases)))
    return got


def with_credit(s: RawSession, client: Client, queue: str, credit: int) -> None:
    """Once this returns, the session is registered and has exactly `credit` (its first credit of
    1 went to a task whose outcome brought `credit`: granted as the outcome was taken in, before it
    was recorded)."""
    first = client.submit("t.add", [0, 0], queue=queue)
    (a,) = assignments(s)
    assert a.task.id == first.id
    report(s, [a], credit)
    assert first.get(timeout=20) == 0


@contextlib.contextmanager
def announced(redis_url: str, queue: str) -> Iterator[list[str]]:
    """Collects the announcements of `queue` on the registry's wake-up channel while the block
    runs. A task leased in its submission's own round trip is not announced; one left in the
    ready set is, by the same script, before the submission returns."""
    r = redis.Redis.from_url(redis_url)
    ps = r.pubsub()
    ps.subscribe(keys.NOTIFY)
    names: list[str] = []

    def take(until: str) -> bool:
        msg = ps.get_message(timeout=0.1)
        if msg is not None and msg["type"] == until:
            return True
        if msg is not None and msg["type"] == "message":
            names.extend(msg["data"].decode().split(","))
        return until in names

    try:
        eventually(lambda: take("subscribe"), interval=0, what="the subscription")
        yield names
        marker = f"marker-{uuid.uuid4().hex[:6]}"  # published now, it arrives after anything before
        r.publish(keys.NOTIFY, marker)
        eventually(lambda: take(marker), interval=0, what="the marker on the wake-up channel")
        names[:] = [n for n in names if n == queue]
    finally:
        ps.close()
        r.close()


def states(client: Client, task_id: str) -> list[int]:
    """The states of a final task's recorded events, in order."""
    return [e.state for e in client.watch([task_id]) if not e.progress_only]


def test_a_task_expired_by_its_hand_over_is_dropped_and_the_rest_are_delivered_once(
    local, client, session, redis_server, queue_name
):
    """Two tasks leased for an idle session in their submission's round trip, one of them expired
    by then: `finish_now` declines, `finish` records that one EXPIRED without sending it, sends the
    other, and gives the session back the credit the expired one took."""
    with_credit(session, client, queue_name, 2)
    specs = [
        build_spec("t.add", [1, 1], queue=queue_name, expires=LONG_AGO),
        build_spec("t.add", [2, 2], queue=queue_name),
    ]
    with announced(redis_server.url, queue_name) as woken:
        expired, live = client.submit_many(specs)
    assert woken == []  # both leased in the submission's round trip: they went the hand-over's way

    sent = assignments(session)
    assert [x.task.id for x in sent] == [live.id]  # the expired one is not sent
    a = sent[0]
    end = client.wait(expired.id, timeout=20)
    assert end.state == task_pb2.TASK_STATE_EXPIRED
    assert end.error.type == "tasktide.Expired"
    assert states(client, expired.id) == [task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_EXPIRED]
    r = redis.Redis.from_url(redis_server.url)
    try:
        q = keys.queue_keys(queue_name)
        eventually(lambda: r.zscore(q.leases, expired.id) is None, what="the expired task's lease ended")
        assert r.zscore(q.ready, expired.id) is None
    finally:
        r.close()

    # The credit the expired task took came back: the next task goes to the session too.
    later = client.submit("t.add", [3, 3], queue=queue_name)
    (b,) = assignments(session)
    assert b.task.id == later.id
    report(session, [a, b], 0)
    assert (live.get(timeout=20), later.get(timeout=20)) == (4, 6)
    ran = [task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RUNNING, task_pb2.TASK_STATE_SUCCEEDED]
    assert states(client, live.id) == ran  # recorded once
    assert states(client, later.id) == ran
    assert client.status(expired.id) is TaskState.EXPIRED


def test_outcomes_cut_the_linger_short_and_a_later_dispatch_lingers_again(
    local, client, session, queue_name, monkeypatch
):
    """Started events wait for an outcome to go with; the first outcome takes every waiting event
    along (those of tasks still running too) and cancels the linger's timer; the next dispatch
    sets one again, whose events are recorded with no outcome at all."""
    with_credit(session, client, queue_name, 3)
    usual = session_state.STARTED_LINGER
    monkeypatch.setattr(session_state, "STARTED_LINGER", AN_HOUR)
    handles = client.submit_many([build_spec("t.add", [i, i], queue=queue_name) for i in range(3)])
    held = assignments(session)
    assert sorted(a.task.id for a in held) == sorted(h.id for h in handles)  # one message for the three
    # Their QUEUED and RUNNING events wait (the session has them since it sent the message).
    assert not any(r.found for r in client.fetch([h.id for h in handles]))

    # Two outcomes: the events of all three go with them, the third task's RUNNING included.
    report(session, held[:2], 0)
    for a in held[:2]:
        assert client.result(a.task.id, timeout=20) == 2 * json.loads(a.task.spec.args.json)[0]
    still = held[2].task.id
    eventually(lambda: client.fetch([still])[0].state == task_pb2.TASK_STATE_RUNNING, what="the third task RUNNING")

    # That linger ended with the outcomes; a later dispatch sets a timer of its own, which records
    # its events with no outcome at all (nothing waits for the next outcome of the session).
    monkeypatch.setattr(session_state, "STARTED_LINGER", usual)
    report(session, held[2:], 1)
    assert client.result(still, timeout=20) == 2 * json.loads(held[2].task.spec.args.json)[0]
    later = client.submit("t.add", [5, 5], queue=queue_name)
    (b,) = assignments(session)
    assert b.task.id == later.id
    eventually(lambda: client.fetch([later.id])[0].state == task_pb2.TASK_STATE_RUNNING, what="RUNNING, no outcome")
    report(session, [b], 0)
    assert later.get(timeout=20) == 10

    running, succeeded = task_pb2.TASK_STATE_RUNNING, task_pb2.TASK_STATE_SUCCEEDED
    for task_id in [*(h.id for h in handles), later.id]:
        assert states(client, task_id) == [task_pb2.TASK_STATE_QUEUED, running, succeeded], task_id
