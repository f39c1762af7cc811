"""Explain: why a task is not running (yet), in one sentence for a person."""

from __future__ import annotations

import datetime as dt

from tasktide.v1 import scheduler_pb2, task_pb2, worker_pb2
from tasktide_services.common.layout import is_final
from tasktide_services.common.peers import Peers
from tasktide_services.scheduler.admission import HELD_BY
from tasktide_services.scheduler.store import SchedulerStore

R = scheduler_pb2
S = task_pb2


def _at(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


async def explain(
    task: task_pb2.Task, res: task_pb2.TaskResult, store: SchedulerStore, peers: Peers
) -> scheduler_pb2.Explanation:
    state = res.state if res.found else task.state
    out = R.Explanation(task_id=task.id, state=state)
    name = S.TaskState.Name(state).removeprefix("TASK_STATE_")
    if is_final(state):
        out.reason, out.message = R.WAIT_REASON_FINISHED, f"finished: {name} at {_at(res.updated_ms)}"
        return out
    q = task.spec.queue
    if state == S.TASK_STATE_RUNNING:
        # Recorded as running, yet back in its queue if its lease expired and the reaper could not
        # record that (the results service away: worker/reaper.py), so the registry is asked.
        loc = await peers.registry.Locate(worker_pb2.LocateRequest(task_id=task.id, queue=q))
        if not loc.ready:
            out.reason = R.WAIT_REASON_RUNNING
            out.message = f"running on worker {res.worker_id} (attempt {res.attempt + 1})"
            return _cancelling(out, loc)
        lost = f"its lease on worker {res.worker_id} expired (the worker was lost or stopped); "
        return _queued(out, loc, q, lost)
    eta = await store.eta(task.id)
    if eta is not None:
        out.eta_ms = eta
        if task.spec.headers.get(HELD_BY) == "rate_limit":
            out.reason = R.WAIT_REASON_RATE_LIMIT
            out.message = f"held back by the rate limit {task.spec.rate_limit} of {task.spec.name}; runs at {_at(eta)}"
        elif task.attempt > 0:
            out.reason = R.WAIT_REASON_RETRY_BACKOFF
            out.message = f"waiting to retry (attempt {task.attempt + 1}) until {_at(eta)}"
        else:
            out.reason, out.message = R.WAIT_REASON_ETA, f"waiting for its ETA {_at(eta)}"
        return out
    loc = await peers.registry.Locate(worker_pb2.LocateRequest(task_id=task.id, queue=q))
    return _queued(out, loc, q)


def _queued(
    out: scheduler_pb2.Explanation, loc: worker_pb2.LocateResponse, q: str, before: str = ""
) -> scheduler_pb2.Explanation:
    """Why a task in its queue (as the registry locates it) has not started; `before` opens the
    message."""
    out.ahead = loc.ahead
    if loc.leased:
        out.reason, message = R.WAIT_REASON_RUNNING, "leased to a worker, starting"
    elif loc.paused:
        out.reason, message = R.WAIT_REASON_QUEUE_PAUSED, f"queue {q!r} is paused"
    elif loc.consumers == 0:
        out.reason, message = R.WAIT_REASON_NO_WORKER, f"no worker consumes queue {q!r}"
    else:
        out.reason = R.WAIT_REASON_QUEUED_BEHIND
        message = f"{loc.ahead} tasks ahead of it in queue {q!r}; {loc.consumers} workers busy"
    out.message = before + message
    return _cancelling(out, loc)


def _cancelling(out: scheduler_pb2.Explanation, loc: worker_pb2.LocateResponse) -> scheduler_pb2.Explanation:
    """A Cancel the registry keeps for the task (asked while it was leased: worker/cancelled.py) is
    said: the task goes on until its worker stops it, or its lease ends."""
    if loc.cancel_asked:
        out.cancel_asked = True
        out.message += "; a cancel was asked: it ends CANCELLED once its worker stops it or its lease ends"
    return out
