"""The Results gRPC service: record events, read results, wait for one, watch many."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common import tenancy, validate
from tasktide_services.common.auth import current_caller
from tasktide_services.common.errors import InvalidArgument, Unavailable
from tasktide_services.common.layout import is_final
from tasktide_services.common.notify import Notifier, wait_any
from tasktide_services.common.settings import ServerSettings
from tasktide_services.results.follow import follow
from tasktide_services.results.listing import list_tasks
from tasktide_services.results.reading import (
    WATCH_EVENTS_PER_READ,
    WATCH_MESSAGE_BYTES,
    WATCH_MESSAGE_EVENTS,
    WATCH_READ_BATCH,
    WATCH_RESYNC,
)
from tasktide_services.results.reading import own as _own
from tasktide_services.results.reading import pause as _pause
from tasktide_services.results.store import ResultsStore

log = logging.getLogger("tasktide.results")

MAX_WAIT = 60.0
POLL = 1.0


class ResultsService:
    def __init__(self, store: ResultsStore, notifier: Notifier, settings: ServerSettings) -> None:
        self.store = store
        self.notifier = notifier
        self.settings = settings

    async def Record(self, req: results_pb2.RecordRequest, ctx: grpc.aio.ServicerContext) -> results_pb2.RecordResponse:
        validate.batch_size(len(req.events), self.settings.limits)
        for e in req.events:
            validate.task_id(e.task_id)
            # The record script stores both as unsigned digits; a negative one could not be read back.
            if e.state < 0:
                raise InvalidArgument(f"event state must not be negative, got {e.state}")
            validate.unix_ms(e.at_ms, "event at_ms")
        return results_pb2.RecordResponse(accepted=await self.store.record(list(req.events)))

    async def Get(self, req: results_pb2.GetRequest, ctx: grpc.aio.ServicerContext) -> results_pb2.GetResponse:
        validate.batch_size(len(req.task_ids), self.settings.limits)
        ids = [validate.task_id(t) for t in req.task_ids]
        return results_pb2.GetResponse(results=_own(await self.store.get(ids)))

    async def ListTasks(
        self, req: results_pb2.ListTasksRequest, ctx: grpc.aio.ServicerContext
    ) -> results_pb2.ListTasksResponse:
        return await list_tasks(self.store, req, current_caller(), self.settings.limits)

    async def Wait(self, req: results_pb2.WaitRequest, ctx: grpc.aio.ServicerContext) -> task_pb2.TaskResult:
        tid = validate.task_id(req.task_id)
        if req.timeout < 0:
            raise InvalidArgument("timeout must be non-negative")
        deadline = time.monotonic() + min(req.timeout or MAX_WAIT, MAX_WAIT)
        failures = 0
        while True:
            ev = self.notifier.hold(tid)
            try:
                try:
                    # A result this process has just written as final is not read back.
                    here = self.store.ended_here([tid])
                    (res,) = [here[tid]] if tid in here else await self.store.get([tid])
                except Exception as exc:  # noqa: BLE001 - Redis away: try again until the deadline
                    failures += 1
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Unavailable(f"task results cannot be read now: {exc}") from exc
                    log.warning("Wait: reading %s failed (%d in a row): %s", tid, failures, exc)
                    await asyncio.sleep(min(left, _pause(failures)))
                    continue
                failures = 0
                if res.found:
                    tenancy.check_owner(current_caller(), res.spec, tid)
                left = deadline - time.monotonic()
                if is_final(res.state) or left <= 0:
                    return res
                await wait_any([ev], min(left, POLL))
            finally:
                self.notifier.release(tid, ev)

    def Follow(
        self, requests: AsyncIterator[results_pb2.FollowRequest], ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[results_pb2.FollowResponse]:
        return follow(self.store, self.notifier, self.settings.limits.max_batch, requests, ctx.send_initial_metadata)

    async def _read(
        self, cursors: dict[str, str], ids: set[str], final_only: bool
    ) -> dict[str, list[task_pb2.TaskEvent]]:
        """Events after each cursor (or only final events), in round trips of WATCH_READ_BATCH tasks."""
        found: dict[str, list[task_pb2.TaskEvent]] = {}
        batch = list(ids)
        for i in range(0, len(batch), WATCH_READ_BATCH):
            chunk = batch[i : i + WATCH_READ_BATCH]
            if final_only:
                found.update({t: [ev] for t, ev in (await self.store.finals(chunk)).items()})
            else:
                found.update(await self.store.events_after_many({t: cursors[t] for t in chunk}, WATCH_EVENTS_PER_READ))
        return found

    async def Watch(
        self, req: results_pb2.WatchRequest, ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[task_pb2.TaskEvent]:
        async for batch in self._watch(req):
            for ev in batch:
                yield ev

    async def WatchBatches(
        self, req: results_pb2.WatchRequest, ctx: grpc.aio.ServicerContext
    ) -> AsyncIterator[results_pb2.TaskEventBatch]:
        async for batch in self._watch(req):
            message = results_pb2.TaskEventBatch()
            size = 0
            for ev in batch:
                n = ev.ByteSize()
                if message.events and (len(message.events) >= WATCH_MESSAGE_EVENTS or size + n > WATCH_MESSAGE_BYTES):
                    yield message
                    message, size = results_pb2.TaskEventBatch(), 0
                message.events.append(ev)
                size += n
            yield message

    async def _watch(self, req: results_pb2.WatchRequest) -> AsyncIterator[list[task_pb2.TaskEvent]]:
        """The events of `req`, a list per read: what was ready at once."""
        validate.batch_size(len(req.task_ids), self.settings.limits)
        cursors = {validate.task_id(t): req.cursors.get(t, "") for t in req.task_ids}
        caller = current_caller()
        if not tenancy.acts_everywhere(caller):  # another namespace's task is not found
            for res in await self.store.get(list(cursors)):
                if res.found:
                    tenancy.check_owner(caller, res.spec, res.task_id)
        pending = set(cursors)
        # A watch of final events only is woken, for what this process records, by the results it
        # wrote as final (`wake_waiters`, with the results kept: ResultsStore.finals), not by the
        # channel's message naming every task of a batch, most of them only started.
        sub = self.notifier.subscribe(pending, finals=req.final_only)
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + WATCH_RESYNC
        try:
            to_check: set[str] = set(pending)
            failures = 0
            while True:
                try:
                    found = await self._read(cursors, to_check, req.final_only)
                except Exception:  # noqa: BLE001 - Redis away: the same tasks are read again after a pause
                    failures += 1
                    log.warning(
                        "Watch: reading %d tasks failed (%d in a row)", len(to_check), failures, exc_info=failures == 1
                    )
                    await asyncio.sleep(_pause(failures))
                    continue
                failures = 0
                batch: list[task_pb2.TaskEvent] = []
                for tid, evs in found.items():
                    for ev in evs:
                        cursors[tid] = ev.cursor
                        if req.final_only and not is_final(ev.state):
                            continue
                        batch.append(ev)
                        if req.until_final and is_final(ev.state) and not ev.progress_only:
                            pending.discard(tid)
                if batch:
                    yield batch
                if req.until_final and not pending:
                    return
                # A task that filled its share of the read has more to give: read again at once.
                more = {t for t, evs in found.items() if len(evs) >= WATCH_EVENTS_PER_READ} & pending
                if more:
                    to_check = more | (sub.take() & pending)
                    continue
                woken = await sub.next_batch(max(resync_at - loop.time(), 0.0))
                if woken is not None:
                    to_check = woken & pending
                else:  # the safety net under pub/sub: a notice lost while the channel was down
                    to_check = set(pending)
                    resync_at = loop.time() + WATCH_RESYNC
        finally:
            self.notifier.unsubscribe(sub)
