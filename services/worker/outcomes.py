"""What the registry does with outcomes: check the fencing token, record, then end the lease.

Order matters for "nothing lost, nothing written twice": the lease is checked (and extended) first,
so a stale worker is rejected; the outcome is recorded with the results service, which keeps only
the first final result of a task; only then is the lease ended. A crash in between leaves the lease
to expire and the task to run again (at-least-once), never a lost result.
"""

from __future__ import annotations

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.peers import Peers
from tasktide_services.worker.store import RegistryStore

_FINAL_STATE = {
    task_pb2.OUTCOME_KIND_SUCCESS: task_pb2.TASK_STATE_SUCCEEDED,
    task_pb2.OUTCOME_KIND_FAILURE: task_pb2.TASK_STATE_FAILED,
    task_pb2.OUTCOME_KIND_TIMEOUT: task_pb2.TASK_STATE_FAILED,
    task_pb2.OUTCOME_KIND_CANCELLED: task_pb2.TASK_STATE_CANCELLED,
}


def _ref(o: task_pb2.Outcome) -> worker_pb2.LeaseRef:
    return worker_pb2.LeaseRef(task_id=o.task_id, queue=o.queue, lease_token=o.lease_token)


class OutcomeHandler:
    def __init__(self, store: RegistryStore, peers: Peers, lease_ms: int) -> None:
        self.store = store
        self.peers = peers
        self.lease_ms = lease_ms

    async def handle(self, outcomes: list[task_pb2.Outcome]) -> list[worker_pb2.LeaseRejected]:
        """Process a batch; returns the rejections for outcomes with a stale token."""
        refs = [_ref(o) for o in outcomes]
        stale = set(await self.store.extend(refs, now_ms() + self.lease_ms))
        rejected = [
            worker_pb2.LeaseRejected(lease=r, reason="stale lease token: the task was redelivered")
            for r in refs
            if r.task_id in stale
        ]
        valid = [o for o in outcomes if o.task_id not in stale]
        if not valid:
            return rejected
        events: list[task_pb2.TaskEvent] = []
        retries: list[tuple[task_pb2.Outcome, task_pb2.Task]] = []
        tasks = {t.id: t for t in await self.store.leased_tasks([_ref(o) for o in valid])}
        for o in valid:
            task = tasks.get(o.task_id) or task_pb2.Task(id=o.task_id, attempt=o.attempt)
            task.attempt = o.attempt
            if o.kind == task_pb2.OUTCOME_KIND_RETRY:
                events.append(
                    event(task, task_pb2.TASK_STATE_RETRYING, o.finished_ms, worker_id=o.worker_id, error=o.error)
                )
                retries.append((o, task))
                continue
            state = _FINAL_STATE.get(o.kind, task_pb2.TASK_STATE_FAILED)
            fields: dict[str, object] = {"worker_id": o.worker_id}
            if o.HasField("result"):
                fields["result"] = o.result
            if o.HasField("error"):
                fields["error"] = o.error
            events.append(event(task, state, o.finished_ms, **fields))
        await self.peers.results.Record(results_pb2.RecordRequest(events=events))
        for o, task in retries:
            task.attempt = o.attempt + 1
            await self.peers.scheduler.Retry(scheduler_pb2.RetryRequest(task=task, countdown=o.retry_countdown))
        await self.store.complete([_ref(o) for o in valid])
        return rejected

    async def progress(self, report: worker_pb2.ProgressReport) -> None:
        (task,) = await self.store.leased_tasks([report.lease]) or [task_pb2.Task(id=report.lease.task_id)]
        ev = event(task, task_pb2.TASK_STATE_RUNNING, progress=report.value, message=report.message, progress_only=True)
        await self.peers.results.Record(results_pb2.RecordRequest(events=[ev]))
