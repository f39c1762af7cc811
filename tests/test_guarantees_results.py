"""Exactly one result is kept, and Watch resumes with nothing lost and nothing twice: in one process
and with each service in its own process (docs/guarantees.md)."""

from __future__ import annotations

import json

import grpc

from tasktide import TaskState
from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2
from tasktide_services.testing import client_settings, eventually, run_worker_thread
from tests.guarantee_tasks import app
from tests.processes import platforms
from tests.raw_session import RawSession

platform = platforms("one", "split")


def _final_states(client, task_id):
    return [TaskState.from_proto(e.state) for e in client.watch([task_id]) if TaskState.from_proto(e.state).is_final]


def _record(platform, *events: task_pb2.TaskEvent) -> list[bool]:
    with grpc.insecure_channel(client_settings(platform.address).results()) as ch:
        reply = results_pb2_grpc.ResultsStub(ch).Record(results_pb2.RecordRequest(events=events), timeout=10)
    return list(reply.accepted)


def _final_event(task_id: str, state: int, value: object) -> task_pb2.TaskEvent:
    return task_pb2.TaskEvent(
        task_id=task_id, state=state, at_ms=1, result=task_pb2.Payload(json=json.dumps(value).encode())
    )


def test_a_second_final_outcome_is_refused_and_the_first_result_stands(platform, client, queue_name):
    h = client.submit("g.add", [1, 2], queue=queue_name)
    with run_worker_thread(app, platform.address, queues=(queue_name,)):
        assert h.get(timeout=15) == 3
    # A late report of the same task, final too (a duplicate from any path): nothing is written.
    assert _record(platform, _final_event(h.id, task_pb2.TASK_STATE_FAILED, "late")) == [False]
    assert _record(platform, _final_event(h.id, task_pb2.TASK_STATE_SUCCEEDED, "late")) == [False]
    assert h.get(timeout=5) == 3
    assert _final_states(client, h.id) == [TaskState.SUCCEEDED]


def test_a_crash_between_record_and_complete_keeps_the_first_result(platform, client, queue_name):
    """The registry recorded the first worker's result, then died before ending the lease: the
    lease expires, the task runs again, and the redelivery's outcome (with a current token, so
    fencing lets it through) must not replace the result already given to the caller."""
    h = client.submit("g.add", [1, 2], queue=queue_name)
    first = RawSession(platform.address, queue_name)
    try:
        a1 = first.next_assignment()
        assert a1.task.id == h.id
        # What the registry recorded before it crashed; the lease is never completed.
        assert _record(platform, _final_event(h.id, task_pb2.TASK_STATE_SUCCEEDED, "first")) == [True]
        assert h.get(timeout=5) == "first"
        second = RawSession(platform.address, queue_name)
        try:
            a2 = second.next_assignment()  # after the first lease expired
            assert (a2.task.id, a2.delivery) == (h.id, 2) and a2.lease_token > a1.lease_token
            second.succeed(a2, "second")
            eventually(lambda: _leased(client, queue_name) == 0, what="the redelivery's lease to end")
        finally:
            second.close()
    finally:
        first.close()
    assert h.get(timeout=5) == "first"
    assert _final_states(client, h.id) == [TaskState.SUCCEEDED]


def test_a_stale_outcome_is_rejected_while_the_redelivery_runs(platform, client, queue_name):
    """Fencing: the worker presumed dead reports while the redelivery still holds the task. Its
    outcome is rejected (the final-state guard would otherwise keep it as the one result)."""
    h = client.submit("g.add", [1, 2], queue=queue_name)
    first = RawSession(platform.address, queue_name)
    try:
        a1 = first.next_assignment()
        second = RawSession(platform.address, queue_name)  # opened once the first holds the task
        try:
            a2 = second.next_assignment()  # after the first lease expired: the first worker went silent
            assert (a1.task.id, a2.task.id, a2.delivery) == (h.id, h.id, 2)
            first.succeed(a1, "stale")
            rejected = first.next_rejection()
            assert rejected.lease.task_id == h.id and "stale" in rejected.reason
            # Not final: the stale outcome was not recorded, and the redelivery's RUNNING was.
            eventually(lambda: client.fetch([h.id])[0].state == task_pb2.TASK_STATE_RUNNING)
            second.succeed(a2, "fresh")
            assert h.get(timeout=10) == "fresh"
        finally:
            second.close()
    finally:
        first.close()
    assert _final_states(client, h.id) == [TaskState.SUCCEEDED]


def test_running_is_recorded_while_the_task_runs(platform, client, queue_name):
    """QUEUED and RUNNING wait a moment for an outcome to be recorded with, never longer: a
    watcher of a long task sees it running. Tasks are assigned one after another to a worker that
    reports nothing (each assignment a batch of its own)."""
    worker = RawSession(platform.address, queue_name, credit=10)
    try:
        ids = []
        for i in range(10):
            ids.append(client.submit("g.add", [i, i], queue=queue_name).id)
            assert worker.next_assignment().task.id == ids[-1]
        eventually(
            lambda: [r.state for r in client.fetch(ids)] == [task_pb2.TASK_STATE_RUNNING] * 10,
            what="every task RUNNING in the results service",
        )
    finally:
        worker.close()


def _leased(client, queue_name):
    return next((s.leased for s in client.queue_stats() if s.queue == queue_name), 0)


def test_a_watch_broken_mid_task_resumes_with_exactly_the_missed_events(platform, client, queue_name):
    h = client.submit("g.add", [1, 2], queue=queue_name)
    worker = RawSession(platform.address, queue_name)
    try:
        a = worker.next_assignment()
        # The registry records QUEUED and RUNNING a moment after the assignment (batched): wait for
        # them in the results service, so the history reads QUEUED, RUNNING, then the progress.
        eventually(lambda: client.fetch([h.id])[0].state == task_pb2.TASK_STATE_RUNNING, what="RUNNING recorded")
        worker.progress(a, 0.25, "one")
        with grpc.insecure_channel(client_settings(platform.address).results()) as ch:
            call = results_pb2_grpc.ResultsStub(ch).Watch(results_pb2.WatchRequest(task_ids=[h.id], until_final=True))
            seen: list[task_pb2.TaskEvent] = []
            for ev in call:  # QUEUED, RUNNING, then the first progress: the stream is live
                seen.append(ev)
                if ev.progress_only:
                    break
            call.cancel()  # the connection breaks while the task runs
        worker.progress(a, 0.5, "two")
        worker.progress(a, 0.75, "three")
        worker.succeed(a, "done")
        assert client.result(h.id, timeout=10) == "done"
    finally:
        worker.close()
    resumed = list(client.watch([h.id], cursors={h.id: seen[-1].cursor}))
    whole = list(client.watch([h.id]))
    assert [TaskState.from_proto(e.state) for e in seen] == [TaskState.QUEUED, TaskState.RUNNING, TaskState.RUNNING]
    assert [(e.progress, e.message) for e in seen if e.progress_only] == [(0.25, "one")]
    assert [(e.progress, e.message) for e in resumed if e.progress_only] == [(0.5, "two"), (0.75, "three")]
    assert [TaskState.from_proto(e.state) for e in resumed if not e.progress_only] == [TaskState.SUCCEEDED]
    # Together exactly the whole history: nothing missed, nothing twice.
    assert [e.cursor for e in seen + resumed] == [e.cursor for e in whole]
    assert [e.SerializeToString() for e in seen + resumed] == [e.SerializeToString() for e in whole]
