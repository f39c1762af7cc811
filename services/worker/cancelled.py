"""Tasks a Cancel was asked for while they were leased (keys.py :cancel), ended as CANCELLED where
they would otherwise go back to their queue.

A Cancel of a leased task is a signal to the worker that runs it (on the replica it is connected
to) and an entry in :cancel that lasts until the lease ends. When the lease ends without the
worker's outcome (the worker was lost or stopped and its lease expired, or it gave the task back
unstarted without having heard the signal), `reap` and `release` (scripts.lua) keep the task held
instead of queueing it again, and the caller ends it here: recorded CANCELLED, then its lease ended.
So a task cancelled while its worker was away is never run again. When the record fails, the lease
is left to expire and the reaper finds the Cancel again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common.events import event, first_events
from tasktide_services.common.peers import Peers
from tasktide_services.worker.store import Leased, RegistryStore
from tasktide_services.worker.workflow_ends import report_to_workflows

log = logging.getLogger("tasktide.registry")

# What the CANCELLED event says, by where the task was when its lease ended.
WORKER_AWAY = "its worker was lost or stopped before the Cancel reached it; the task is not run again"
NEVER_SENT = "before it was sent to a worker"


def given_back(worker_id: str) -> str:
    return f"given back unstarted by worker {worker_id}"


async def end_cancelled(
    store: RegistryStore,
    peers: Peers,
    held: Sequence[Leased],
    why: str,
    started: Sequence[task_pb2.TaskEvent] = (),
) -> int:
    """Record the tasks of `held` (leases of the caller's) CANCELLED with their first event (and
    `started`: their events a session had not recorded yet), tell their workflows, then end their
    leases. Returns how many ended; none when the record failed
    or when Redis failed (logged: their leases expire, and the reaper ends them)."""
    if not held:
        return 0
    err = task_pb2.TaskError(type="tasktide.CancelRequested", message=f"cancelled: {why}")
    tasks = [h.task for h in held if h.task.spec.name]  # a value that did not parse: nothing to record
    ended = [event(t, task_pb2.TASK_STATE_CANCELLED, error=err) for t in tasks]
    try:
        await report_to_workflows(peers, ended, tasks)
        if ended:
            events = [e for t in tasks for e in first_events(t)] + list(started) + ended
            await peers.results.Record(results_pb2.RecordRequest(events=events))
        return await store.complete([h.ref() for h in held])
    except Exception:  # noqa: BLE001 - see above
        log.warning("ending %d cancelled tasks failed; their leases expire", len(held), exc_info=True)
        return 0
