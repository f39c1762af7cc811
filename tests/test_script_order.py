"""A registry script that moves a task writes its new place before it leaves the old one; one that
stores a new task takes it back when it cannot queue it.

Redis keeps what a script wrote before one of its commands failed. Each case below makes the task's
new place refuse the write (a key of the wrong type) and checks that the task is still where it
was (or, submitted, not stored at all), then mends the key and checks that the same call now moves
(or queues) it: the task is never in neither place, so nothing loses it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tasktide.v1 import task_pb2
from tasktide_services.common.lua import load_scripts, run_blocking_pipeline
from tasktide_services.scheduler.admission import new_task
from tasktide_services.worker import keys
from tasktide_services.worker.store import SCRIPTS, build_enqueue
from tests.tasks_app import app

SCRIPTS_ = load_scripts(None, SCRIPTS)
# Leases run an hour from now: the registry of a platform that other tests started on the same Redis
# reaps expired leases of every queue it knows (a test's queue too) and would take them mid-test.
# The reap cases pass a time far beyond (10**13 ms).
LEASE_MS = 3_600_000


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture()
def r(redis_server) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server.url)
    yield conn
    conn.close()


@pytest.fixture()
def queue() -> str:
    return f"so-{uuid.uuid4().hex[:8]}"


def _call(r: redis.Redis, name: str, queue: str, args: list[object]) -> object:
    replies = run_blocking_pipeline(r, lambda pipe: SCRIPTS_[name](keys.queue_keys(queue), args, client=pipe), SCRIPTS_)
    if isinstance(replies[0], Exception):
        raise replies[0]
    return replies[0]


def _task(queue: str, *args: int) -> task_pb2.Task:
    return new_task(app.tasks["t.add"].spec(list(args), queue=queue), 0)


def _queued(r: redis.Redis, queue: str) -> str:
    task = _task(queue, 1, 2)
    run_blocking_pipeline(r, lambda pipe: build_enqueue(pipe, SCRIPTS_, [task]), SCRIPTS_)
    return task.id


def _leased(r: redis.Redis, queue: str) -> tuple[str, str]:
    """A task leased (for LEASE_MS): (its id, its token)."""
    tid = _queued(r, queue)
    out = _call(r, "dispatch", queue, [_now_ms(), LEASE_MS, 1])
    assert isinstance(out, list) and out[0].decode() == tid
    return tid, out[1].decode() if isinstance(out[1], bytes) else str(out[1])


def _leased_now(r: redis.Redis, queue: str, tid: str) -> bool:
    k = keys.queue_keys(queue)
    return r.hexists(k.tokens, tid) and r.zscore(k.leases, tid) is not None


def _fails_while_refused(r: redis.Redis, key: str, name: str, queue: str, args: list[object]) -> None:
    """Script `name` called while `key` refuses its writes (a key of the wrong type) fails with
    WRONGTYPE; the key is then mended (deleted), for the same call to be made again."""
    r.delete(key)
    r.set(key, "not the type the script writes")
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            _call(r, name, queue, args)
    finally:
        r.delete(key)


def test_dispatch_leases_before_it_leaves_the_ready_set(r, queue):
    k = keys.queue_keys(queue)
    tid = _queued(r, queue)
    _fails_while_refused(r, k.leases, "dispatch", queue, [_now_ms(), LEASE_MS, 1])
    assert r.zscore(k.ready, tid) is not None, "the task left the ready set without a lease"
    out = _call(r, "dispatch", queue, [_now_ms(), LEASE_MS, 1])
    assert isinstance(out, list) and out[0].decode() == tid
    assert r.zscore(k.ready, tid) is None and _leased_now(r, queue, tid)


def test_enqueue_dispatch_leases_before_it_leaves_the_ready_set(r, queue):
    """With tasks waiting, a submission joins them and the first ones are leased: when the lease
    fails, both the waiting task and the new one stay queued."""
    k = keys.queue_keys(queue)
    waiting = _queued(r, queue)
    new = _task(queue, 3, 4)
    argv = [10**13, 1, queue, keys.NOTIFY, new.id, keys.task_value(new)]
    _fails_while_refused(r, k.leases, "enqueue_dispatch", queue, argv)
    assert r.zscore(k.ready, waiting) is not None and r.zscore(k.ready, new.id) is not None
    out = _call(r, "enqueue_dispatch", queue, argv)  # the same submission again: known, not added twice
    assert isinstance(out, list) and out[0].decode() == waiting
    assert _leased_now(r, queue, waiting) and r.zscore(k.ready, new.id) is not None


def test_reap_holds_the_task_and_release_puts_it_back_before_it_ends_the_lease(r, queue):
    """`reap` keeps an expired task leased, under a token of the reaper's; `release` (the delivery
    counted) then puts it back in the ready set before it ends that lease."""
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    hold = 10**13 + 10_000
    reply = _call(r, "reap", queue, [10**13, 5, 100, hold])
    assert isinstance(reply, list) and reply[:4] == [1, tid.encode(), reply[2], 1] and reply[2] != int(token)
    assert reply[5] == 0  # no Cancel was asked
    assert _leased_now(r, queue, tid) and r.zscore(k.leases, tid) == hold
    args = [queue, keys.NOTIFY, 1, tid, reply[2]]
    _fails_while_refused(r, k.ready, "release", queue, args)
    assert _leased_now(r, queue, tid), "the lease ended and the task is nowhere"
    assert _call(r, "release", queue, args) == [1]
    assert r.zscore(k.ready, tid) is not None and not _leased_now(r, queue, tid)
    assert r.hget(k.deliveries, tid) == b"1"  # an expired delivery counts


def test_reap_buries_before_it_ends_the_lease(r, queue):
    k = keys.queue_keys(queue)
    tid, _ = _leased(r, queue)
    args = [10**13, 1, 100, 10**13 + 10_000]  # delivered once: the most allowed
    _fails_while_refused(r, k.dead, "reap", queue, args)
    assert _leased_now(r, queue, tid)
    assert _call(r, "reap", queue, args) == [0, tid.encode()]
    assert r.zscore(k.dead, tid) is not None and not _leased_now(r, queue, tid)


def test_release_puts_the_task_back_before_it_ends_the_lease(r, queue):
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    args = [queue, keys.NOTIFY, 0, tid, token]
    _fails_while_refused(r, k.ready, "release", queue, args)
    assert _leased_now(r, queue, tid)
    assert r.hget(k.deliveries, tid) == b"1"
    assert _call(r, "release", queue, args) == [1]
    assert r.zscore(k.ready, tid) is not None and not _leased_now(r, queue, tid)
    assert r.hget(k.deliveries, tid) == b"0"  # a released delivery does not count


def test_a_cancel_asked_for_a_leased_task_lasts_until_its_lease_ends(r, queue):
    """`revoke` of a leased task keeps the Cancel (and its grace) in :cancel: `extend` names it to the
    heartbeat of the lease's holder; `complete` forgets it with the task."""
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    assert _call(r, "revoke", queue, [2.5, tid]) == [2]
    assert r.hget(k.cancel, tid) == b"2.5"
    assert _call(r, "extend", queue, [10**13, tid, token]) == [[], [tid.encode(), b"2.5"]]
    assert _call(r, "extend", queue, [10**13, tid, "0"]) == [[tid.encode()], []]  # a stale holder hears nothing
    assert _call(r, "complete", queue, [tid, token]) == 1
    assert r.exists(k.cancel) == 0


@pytest.mark.parametrize("counted", [0, 1])
def test_release_keeps_a_task_a_cancel_was_asked_for(r, queue, counted):
    """Given back (0) or requeued by the reaper (1), a task a Cancel was asked for is not put back:
    it stays held under the same lease, named in the reply, for its caller to end it."""
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    other, other_token = _leased(r, queue)
    _call(r, "revoke", queue, [0, tid])
    args = [queue, keys.NOTIFY, counted, tid, token, other, other_token]
    assert _call(r, "release", queue, args) == [1, tid.encode()]
    assert r.zscore(k.ready, tid) is None and _leased_now(r, queue, tid) and r.hget(k.tokens, tid) == token.encode()
    assert r.zscore(k.ready, other) is not None and not _leased_now(r, queue, other)
    assert _call(r, "complete", queue, [tid, token]) == 1  # the caller ends it
    assert r.exists(k.cancel) == 0 and r.hget(k.task, tid) is None


def test_reap_holds_a_task_a_cancel_was_asked_for_apart_even_at_its_last_delivery(r, queue):
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    _call(r, "revoke", queue, [0, tid])
    hold = 10**13 + 10_000
    reply = _call(r, "reap", queue, [10**13, 1, 100, hold])  # delivered once: the most allowed
    assert isinstance(reply, list) and reply[0] == 1 and reply[1] == tid.encode() and reply[5] == 1
    assert r.zscore(k.dead, tid) is None and r.zscore(k.leases, tid) == hold
    assert _call(r, "release", queue, [queue, keys.NOTIFY, 1, tid, reply[2]]) == [0, tid.encode()]
    assert _call(r, "complete", queue, [tid, reply[2]]) == 1
    assert r.exists(k.cancel) == 0


def test_bury_moves_the_task_to_the_dead_set_before_it_ends_the_lease(r, queue):
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    _fails_while_refused(r, k.dead, "bury", queue, [5, tid, token])
    assert _leased_now(r, queue, tid)
    assert _call(r, "bury", queue, [5, tid, token]) == 1
    assert r.zscore(k.dead, tid) is not None and not _leased_now(r, queue, tid)


def test_retire_parks_the_next_attempt_before_it_ends_the_lease(r, queue):
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    args = [5, tid, token, b"next attempt"]
    _fails_while_refused(r, k.retrying, "retire", queue, args)
    assert _leased_now(r, queue, tid) and r.hexists(k.task, tid)
    assert _call(r, "retire", queue, args) == [[tid.encode()], []]
    assert r.hget(k.retrying, tid) == b"next attempt" and not _leased_now(r, queue, tid)


def test_retire_keeps_the_lease_of_a_task_a_cancel_was_asked_for(r, queue):
    """A retry asked after a Cancel: no next attempt is parked, the lease stays for its caller to
    end the task cancelled (or for the reaper, which finds the Cancel once it expires)."""
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    assert _call(r, "revoke", queue, [5, tid]) == [2]
    assert _call(r, "retire", queue, [5, tid, token, b"next attempt"]) == [[], [tid.encode()]]
    assert not r.hexists(k.retrying, tid) and _leased_now(r, queue, tid) and r.hexists(k.cancel, tid)


def test_a_cancel_of_a_parked_retry_is_kept_until_the_scheduler_holds_the_attempt(r, queue):
    """Between `retire` and the scheduler's hold, a next attempt is in neither service's hands:
    `revoke` keeps its Cancel, and `retried` names it once the scheduler holds the attempt."""
    k = keys.queue_keys(queue)
    tid, token = _leased(r, queue)
    assert _call(r, "retire", queue, [5, tid, token, b"next attempt"]) == [[tid.encode()], []]
    assert _call(r, "revoke", queue, [5, tid]) == [2]
    assert r.hget(k.cancel, tid) == b"5"
    assert _call(r, "retried", queue, [tid]) == [tid.encode()]
    assert not r.hexists(k.retrying, tid) and r.zscore(k.retry_at, tid) is None
    assert _call(r, "retried", queue, ["another"]) == []


def _stored(r: redis.Redis, queue: str, tid: str) -> bool:
    return bool(r.hexists(keys.queue_keys(queue).task, tid))


def test_enqueue_takes_back_a_task_it_cannot_queue(r, queue):
    """A refused ready set fails the submission with nothing stored: submitted again, the task is
    new, not known, and is queued."""
    k = keys.queue_keys(queue)
    task = _task(queue, 1, 2)
    argv = [queue, keys.NOTIFY, task.id, keys.task_value(task)]
    _fails_while_refused(r, k.ready, "enqueue", queue, argv)
    assert not _stored(r, queue, task.id), "stored and in no queue: a resubmission would be taken as known"
    assert _call(r, "enqueue", queue, argv) == 1
    assert r.zscore(k.ready, task.id) is not None


def test_enqueue_dispatch_takes_back_a_task_it_cannot_lease(r, queue):
    """An empty queue: the new task would be leased at once. A refused lease fails the submission
    with nothing of the task left; submitted again, it is leased."""
    k = keys.queue_keys(queue)
    task = _task(queue, 1, 2)
    argv = [10**13, 1, queue, keys.NOTIFY, task.id, keys.task_value(task)]
    _fails_while_refused(r, k.leases, "enqueue_dispatch", queue, argv)
    assert not _stored(r, queue, task.id) and not r.hexists(k.tokens, task.id)
    out = _call(r, "enqueue_dispatch", queue, argv)
    assert isinstance(out, list) and out[0].decode() == task.id
    assert _leased_now(r, queue, task.id)
