"""What the registry does with outcomes: check the fencing token, record, then end the lease.

Order matters for "nothing lost, nothing written twice": the lease is checked (and extended) first,
so a stale worker is rejected; the outcome is recorded with the results service, which keeps only
the first final result of a task; only then is the lease ended. A crash in between leaves the lease
to expire and the task to run again (at-least-once), never a lost result.

An attempt that asks for a retry ends its lease atomically with its next attempt being parked in the
registry's :retrying hash; the next attempt is then handed to the scheduler, which owns delays.
A task a Cancel was asked for while it ran (and did not heed) takes no next attempt: it is ended
CANCELLED (cancelled.py).
A failure after the last allowed retry moves the task to the dead-letter set (state DEAD), from
where it can be listed and requeued.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from redis.asyncio.client import Pipeline

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2, workflow_pb2
from tasktide_services.common.events import event, now_ms
from tasktide_services.common.hooks import ServiceHooks
from tasktide_services.common.lua import run_pipeline
from tasktide_services.common.peers import Peers
from tasktide_services.worker.cancelled import end_cancelled
from tasktide_services.worker.store import Leased, RegistryStore
from tasktide_services.worker.workflow_ends import WORKFLOW

log = logging.getLogger("tasktide.registry")

# What the CANCELLED event of a task that asked for a retry after a Cancel says.
RETRY_NOT_RUN = "asked while its attempt ran; the retry that attempt asked for is not run"


_FINAL_STATE = {
    task_pb2.OUTCOME_KIND_SUCCESS: task_pb2.TASK_STATE_SUCCEEDED,
    task_pb2.OUTCOME_KIND_FAILURE: task_pb2.TASK_STATE_FAILED,
    task_pb2.OUTCOME_KIND_TIMEOUT: task_pb2.TASK_STATE_FAILED,
    task_pb2.OUTCOME_KIND_CANCELLED: task_pb2.TASK_STATE_CANCELLED,
}


def ref(o: task_pb2.Outcome) -> worker_pb2.LeaseRef:
    return worker_pb2.LeaseRef(task_id=o.task_id, queue=o.queue, lease_token=o.lease_token)


def _exhausted(task: task_pb2.Task, o: task_pb2.Outcome) -> bool:
    """A failure after retries were allowed and all were used."""
    if o.kind != task_pb2.OUTCOME_KIND_FAILURE:
        return False
    retries = task.spec.retry.max_retries
    return o.retries_exhausted or (retries > 0 and o.attempt >= retries)


async def hand_retries(store: RegistryStore, peers: Peers, tasks: list[task_pb2.Task]) -> None:
    """Give next attempts to the scheduler (which owns delays), then forget them here. A crash in
    between leaves them in :retrying, where the reaper finds them and hands them over again.

    A Cancel asked while a next attempt was parked here found it in neither service's hands:
    `revoke` kept it in :cancel, and it is handed to the scheduler now that the scheduler holds the
    attempt. A Cancel that cannot be handed on stays in :cancel, where it stops the attempt once
    leased (its worker is told at its heartbeat; reap and release end it CANCELLED)."""
    by_queue: dict[str, list[str]] = {}
    for task in tasks:
        await peers.scheduler.Retry(scheduler_pb2.RetryRequest(task=task, countdown=task.spec.countdown))
        by_queue.setdefault(task.spec.queue, []).append(task.id)
    for q, ids in by_queue.items():
        asked = await store.retried(q, ids)
        try:
            handed = []
            for task_id in asked:
                answer = await peers.scheduler.Cancel(scheduler_pb2.CancelRequest(task_id=task_id))
                if answer.state != task_pb2.TASK_STATE_RUNNING:  # RUNNING: leased again, its Cancel kept anew
                    handed.append(task_id)
            await store.forget_cancels(q, handed)
        except Exception:  # noqa: BLE001 - see above: the Cancels kept stop the attempts later
            log.warning("handing %d Cancels of parked retries to the scheduler failed", len(asked), exc_info=True)


def _ran(o: task_pb2.Outcome) -> dict[str, int]:
    """The end event's run_ms: how long the worker ran the attempt (the task index's run time)."""
    return {"run_ms": max(o.finished_ms - o.started_ms, 0)} if o.started_ms and o.finished_ms else {}


class OutcomeHandler:
    def __init__(self, store: RegistryStore, peers: Peers, lease_ms: int, hooks: ServiceHooks | None = None) -> None:
        self.store = store
        self.peers = peers
        self.lease_ms = lease_ms
        self.hooks = hooks or ServiceHooks()

    async def handle(
        self,
        outcomes: list[task_pb2.Outcome],
        started: list[task_pb2.TaskEvent] | None = None,
        known: Mapping[str, Leased] | None = None,
    ) -> list[worker_pb2.LeaseRejected]:
        """Process a batch; returns the rejections for outcomes with a stale token. `started`
        events (tasks just dispatched) are recorded in the same call, before the outcomes.
        `known`: the leases of the session that reported them (see `_check`)."""
        events: list[task_pb2.TaskEvent] = list(started or ())
        refs = [ref(o) for o in outcomes]
        held = await self._check(refs, known or {})
        rejected = [
            worker_pb2.LeaseRejected(lease=r, reason="stale lease token: the task was redelivered")
            for r, t in zip(refs, held, strict=True)
            if t is None
        ]
        valid = [(o, t) for o, t in zip(outcomes, held, strict=True) if t is not None]
        valid_refs = [r for r, t in zip(refs, held, strict=True) if t is not None]
        if not valid:
            if events:
                await self.peers.results.Record(results_pb2.RecordRequest(events=events))
            return rejected
        retries: list[tuple[worker_pb2.LeaseRef, task_pb2.Task]] = []
        completions: list[workflow_pb2.Completion] = []
        done: list[worker_pb2.LeaseRef] = []
        dead: list[worker_pb2.LeaseRef] = []
        for (o, task), lease in zip(valid, valid_refs, strict=True):
            task.attempt = o.attempt
            if o.kind == task_pb2.OUTCOME_KIND_RETRY:
                events.append(
                    event(
                        task,
                        task_pb2.TASK_STATE_RETRYING,
                        o.finished_ms,
                        worker_id=o.worker_id,
                        error=o.error,
                        **_ran(o),
                    )
                )
                retry = task_pb2.Task()
                retry.CopyFrom(task)
                retry.attempt = o.attempt + 1
                retry.spec.countdown = o.retry_countdown
                retries.append((lease, retry))
                continue
            exhausted = _exhausted(task, o)
            state = task_pb2.TASK_STATE_DEAD if exhausted else _FINAL_STATE.get(o.kind, task_pb2.TASK_STATE_FAILED)
            fields: dict[str, object] = {"worker_id": o.worker_id, **_ran(o)}
            if o.HasField("result"):
                fields["result"] = o.result
            if o.HasField("error"):
                fields["error"] = o.error
            events.append(event(task, state, o.finished_ms, **fields))
            (dead if exhausted else done).append(lease)
            if WORKFLOW in task.spec.headers:
                completions.append(
                    workflow_pb2.Completion(
                        task_id=task.id, headers=task.spec.headers, state=state, result=o.result, error=o.error
                    )
                )
        with self.hooks.settling(valid):
            if completions:  # before the lease ends: a crash in between reports again (harmlessly)
                await self.peers.workflows.Completed(workflow_pb2.CompletedRequest(completions=completions))
            if not retries and not dead and await self._record_and_complete(events, done):
                return rejected
            await self.peers.results.Record(results_pb2.RecordRequest(events=events))
            if retries:
                retired_ids, kept_ids = await self.store.retire(retries, now_ms())
                retired, kept = set(retired_ids), set(kept_ids)
                await hand_retries(self.store, self.peers, [t for _, t in retries if t.id in retired])
                cancelled = [  # as they ran (the attempt that asked for the retry)
                    Leased(t, r.lease_token, 0, 0) for (_, t), r in zip(valid, valid_refs, strict=True) if t.id in kept
                ]
                await end_cancelled(self.store, self.peers, cancelled, RETRY_NOT_RUN)
            if done:
                await self.store.complete(done)
            if dead:
                await self.store.bury(dead, now_ms())
                self.hooks.dead_lettered([t for o, t in valid if _exhausted(t, o)], "retries_exhausted")
        return rejected

    async def _check(self, refs: list[worker_pb2.LeaseRef], known: Mapping[str, Leased]) -> list[task_pb2.Task | None]:
        """Per lease, its task if its token is current, else None.

        A lease that this session took, with the token it gave out, and whose deadline is further
        away than half a lease, is current: only the lease's expiry lets the task go to another
        worker, and nothing can expire it before its deadline. Its task is the one held in memory,
        with no round trip. Any other lease is checked (and extended) in Redis by `hold`. Either
        way the lease only ends through `complete`, which checks the token again."""
        now = now_ms()
        tasks: list[task_pb2.Task | None] = []
        ask: list[int] = []
        for i, r in enumerate(refs):
            h = known.get(r.task_id)
            if h is not None and h.token == r.lease_token and h.deadline_ms - now > self.lease_ms // 2:
                tasks.append(h.task)
            else:
                tasks.append(None)
                ask.append(i)
        if ask:
            found = await self.store.hold([refs[i] for i in ask], now + self.lease_ms)
            for i, task in zip(ask, found, strict=True):
                tasks[i] = task
        return tasks

    async def _record_and_complete(self, events: list[task_pb2.TaskEvent], done: list[worker_pb2.LeaseRef]) -> bool:
        """With the results service in this process: its record, then our lease ends, on one
        pipeline (the same order as two calls, one round trip). False when it is not here."""
        results = self.peers.local_results(self.store.redis)
        if results is None:
            return False

        def build(pipe: Pipeline) -> None:
            results.build_record(pipe, events)  # its replies first
            self.store.build_complete(pipe, done)

        try:
            replies = await run_pipeline(self.store.redis, build, results.scripts, self.store.scripts)
        except BaseException:
            results.recorded(events, [])  # what was written is unknown: the followers read it
            raise
        results.recorded(events, replies)
        return True

    async def progress(self, report: worker_pb2.ProgressReport) -> None:
        (task,) = await self.store.hold([report.lease], now_ms() + self.lease_ms)
        if task is None:
            return
        ev = event(task, task_pb2.TASK_STATE_RUNNING, progress=report.value, message=report.message, progress_only=True)
        await self.peers.results.Record(results_pb2.RecordRequest(events=[ev]))
