"""The write that accepts tasks (admission.py): one of two writers, chosen once when the server is
wired (`writer_for`), never per submission.

- `PipelineWriter`: the results service and the registry live in this process on the scheduler's
  Redis connection. Task records and the delayed set (this store), events (the results store) and
  the ready queues (the registry's hand-over: its enqueue, and a lease for a local worker session
  that has credit) go onto one pipeline: one round trip, each owner's commands and scripts.
- `PeerWriter`: records and the delayed set written here, then events and ready queues by calls to
  the results service and the registry.

Either way the order is the same: records and delayed set, events, ready queues, and with them the
idempotency keys claimed for these tasks are confirmed (store.py). With the pipeline, in it. With
calls, in the first write, here: a runnable task with a key is written there too, with its record
and a place in :moving, and leaves :moving once the registry has it. A scheduler that dies before
that leaves the task for any replica's pump to hand over after store.ENQUEUE_MS, and its key names
it all along: a retry of the submission, or a schedule's stranded occurrence submitted again, is
answered with it, never admitted as a second task. So too when the registry's answer is lost (the
call ends UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED or UNKNOWN: it may have queued the tasks): those
tasks stay in :moving, due again after RETRY_IN_DOUBT_MS (the registry skips a task it still holds),
and the submission fails with `KeptInDoubt`, whose keys admission keeps (`Unanswered` without keys).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from redis.asyncio.client import Pipeline

from tasktide.v1 import results_pb2, task_pb2, worker_pb2
from tasktide_services.common.errors import Unavailable
from tasktide_services.common.lua import run_pipeline
from tasktide_services.common.peers import CALL_TIMEOUT, Handover, Peers, RegistryServicer, ResultsWrites
from tasktide_services.scheduler.store import Claim, SchedulerStore

log = logging.getLogger("tasktide.scheduler")

# A call ending so may have reached the registry and written its tasks.
IN_DOUBT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
)
RETRY_IN_DOUBT_MS = 1_000  # a task kept in :moving after an unanswered enqueue is handed over again after this
# Seconds a call to the registry's Enqueue may take before it counts as unanswered: the deadline of
# every peer call, kept here for a registry of this process too (no gRPC deadline there).
ENQUEUE_TIMEOUT = CALL_TIMEOUT


class Unanswered(Unavailable):
    """A peer's answer was lost or never came (IN_DOUBT, a call's deadline): the registry's to
    Enqueue (the tasks may be queued already), or the results service's to the Record before it.
    The tasks are due again soon where they wait in :moving (the pump's)."""


class KeptInDoubt(Unanswered):
    """`Unanswered`, for tasks submitted under idempotency keys (`task_ids`) that were saved before
    the failed call: they stay in :moving (due again soon) or in the delayed set, and their keys
    name them; a retry of the submission is answered with them."""

    def __init__(self, message: str, task_ids: frozenset[str]) -> None:
        super().__init__(message)
        self.task_ids = task_ids


def _in_doubt(exc: Exception) -> str | None:
    """How a peer's call went unanswered ("CODE: details"), or None when it answered (a refusal)
    or was never made."""
    if isinstance(exc, TimeoutError):
        return f"DEADLINE_EXCEEDED: no answer in {ENQUEUE_TIMEOUT:g} s"
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in IN_DOUBT:
        return f"{exc.code().name}: {exc.details()}"
    return None


@dataclass
class Accepted:
    """What one admission writes."""

    records: list[task_pb2.Task] = field(default_factory=list)  # task records kept by the scheduler
    delayed: list[tuple[str, int]] = field(default_factory=list)  # (task id, Unix ms it may run)
    events: list[task_pb2.TaskEvent] = field(default_factory=list)
    runnable: list[task_pb2.Task] = field(default_factory=list)  # for the ready queues
    claims: list[Claim] = field(default_factory=list)  # idempotency keys claimed for these tasks

    def __bool__(self) -> bool:
        return bool(self.records or self.delayed or self.events or self.runnable or self.claims)


class Writer(Protocol):
    async def write(self, accepted: Accepted, /) -> None: ...


def writer_for(store: SchedulerStore, peers: Peers) -> Writer:
    """One pipeline when the results service and the registry are bound in `peers` (hosted in
    this process) on the scheduler's connection; else calls to them."""
    results, registry = peers.local_results(store.redis), peers.local_registry(store.redis)
    if results is None or registry is None:
        return PeerWriter(store, peers)
    return PipelineWriter(store, results, registry)


class PeerWriter:
    def __init__(self, store: SchedulerStore, peers: Peers) -> None:
        self._store = store
        self._peers = peers

    async def write(self, accepted: Accepted, /) -> None:
        keyed = {c.task_id for c in accepted.claims}
        moving = [t for t in accepted.runnable if t.id in keyed]
        moving_ids = [t.id for t in moving]
        if accepted.records or accepted.delayed or accepted.claims:
            await self._store.save(accepted.records + moving, accepted.delayed, accepted.claims, moving_ids)
        peer = "the results service"  # the call under way, named in the error
        try:
            if accepted.events:  # the tasks' first events, before the registry may start them
                await self._peers.results.Record(results_pb2.RecordRequest(events=accepted.events))
            if accepted.runnable:
                peer = "the registry"
                request = worker_pb2.EnqueueRequest(tasks=accepted.runnable)
                await asyncio.wait_for(self._peers.registry.Enqueue(request), ENQUEUE_TIMEOUT)
        except Exception as exc:  # a cancelled write (BaseException) leaves them to the pump
            # Saved with their keys confirmed, the delayed tasks run at their time whatever happened
            # here: their keys keep naming them.
            kept = [c.task_id for c in accepted.claims if c.task_id not in moving_ids]
            doubt = _in_doubt(exc)
            if doubt is None:  # refused, or failed before the call: nothing of it was queued
                await self._forget(moving_ids, f"after a call to {peer} failed")
                if not kept:
                    raise
                why = f"{peer} failed ({exc})"
            else:
                await self._keep(moving_ids)  # saved with their keys confirmed: the pump queues them
                kept += moving_ids
                if not kept:
                    raise Unanswered(f"another service is out of reach or failed ({peer}, {doubt}); retry") from exc
                why = f"{peer} did not answer ({doubt})"
            raise KeptInDoubt(
                f"{why}; the task is kept and runs: retry with the same idempotency key to get its id",
                frozenset(kept),
            ) from exc
        await self._forget(moving_ids, "handed over")

    async def _keep(self, task_ids: list[str]) -> None:
        """Tasks whose hand-over went unanswered (the Record or the Enqueue): due again in :moving
        soon (when this fails, after their hand-over deadline)."""
        try:
            await self._store.due_again(task_ids, RETRY_IN_DOUBT_MS)
        except Exception:  # noqa: BLE001 - the deadline they have stands
            log.exception("bringing %d tasks forward in :moving failed", len(task_ids))

    async def _forget(self, task_ids: list[str], why: str) -> None:
        """The tasks put in :moving are taken out again with their records: the registry has them,
        or refused them (its error is what the caller reports). When this fails, the pump hands
        them over after store.ENQUEUE_MS (the registry skips one it still holds)."""
        try:
            await self._store.forget_moving(task_ids)
        except Exception:  # noqa: BLE001 - the submission's outcome is decided; the pump finishes this
            log.exception("taking %d tasks out of :moving (%s) failed", len(task_ids), why)


class PipelineWriter:
    def __init__(self, store: SchedulerStore, results: ResultsWrites, registry: RegistryServicer) -> None:
        self._store = store
        self._results = results
        self._registry = registry
        self._handing: set[asyncio.Future[None]] = set()  # hand-overs under way (worker/handover.py)

    async def write(self, accepted: Accepted, /) -> None:
        if not accepted:  # e.g. every task was submitted before under its idempotency key
            return
        # Runnable tasks a local worker session has credit for are leased in this same round trip
        # and sent to it at once (worker/handover.py); the others wait in their queue as usual.
        handover = self._registry.handover(accepted.runnable) if accepted.runnable else None

        recorded_at = 0  # the place of the record replies

        def build(pipe: Pipeline) -> None:
            nonlocal recorded_at
            self._store.build_save(pipe, accepted.records, accepted.delayed)
            recorded_at = self._results.build_record(pipe, accepted.events)
            if handover is not None:
                handover.build(pipe)
            self._store.build_confirm(pipe, accepted.claims)

        scripts = (self._store.scripts, self._results.scripts, self._registry.store.scripts)
        try:
            # Under idempotency keys, one transaction: a write broken off before its keys are
            # confirmed must leave nothing behind that runs (their claims are let go).
            replies = await run_pipeline(self._store.redis, build, *scripts, atomic=bool(accepted.claims))
        except BaseException:
            self._results.recorded(accepted.events, [])  # what was written is unknown
            if handover is not None:
                handover.abandon()
            raise
        self._results.recorded(accepted.events, replies[recorded_at:])
        if handover is not None:  # sent once the submission is answered: the answer does not wait
            asyncio.get_running_loop().call_soon(self._hand_over, handover, replies)

    def _hand_over(self, handover: Handover, replies: list[Any]) -> None:
        """At once when nothing needs awaiting (no task per submission), else in a task."""
        if handover.finish_now(replies):
            return
        task = asyncio.ensure_future(handover.finish(replies))
        self._handing.add(task)
        task.add_done_callback(self._handing.discard)
