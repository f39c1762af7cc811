"""Submissions of every open SubmitStream, admitted together.

Each stream hands the submissions it reads to the one `SubmissionPool` of the scheduler. While an
admission is being written, what arrives meanwhile, from any stream, waits in the pool and is
admitted next as one batch (one Redis round trip, one hand-over per worker session), up to the
batch limit at a time. So producers in different processes, each waiting for its own answer, share
the scheduler's writes as threads sharing one stream do.

A message may carry several submissions (its `batch`), which a client sends once the stream's
initial metadata announced it (BATCH_HEADER, with the largest message the server takes in
BYTES_HEADER): a producer with many threads waiting then costs one message each way per round, not
one per submission. Answers ready together for such a stream go back in one message.

Bounds: a stream reads no further while it has `limit` submissions unanswered (gRPC's flow
control then holds its producer back), and a message takes at most `limit` (its entries beyond
are each refused with RESOURCE_EXHAUSTED), so the pool holds under twice `limit` per open stream.
The pool runs a drain task only while it holds something; a failed admission is the answer of
each of its submissions (Admission.submit_each), and the drain goes on with the rest. A malformed
message (an entry with a batch of its own, or a batch beside a spec) ends the stream with
INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tasktide.v1 import scheduler_pb2
from tasktide_services.common.auth import Caller
from tasktide_services.common.errors import InvalidArgument, ResourceExhausted, ServiceError
from tasktide_services.scheduler.admission import Admission

log = logging.getLogger("tasktide.scheduler")

Answer = Callable[[scheduler_pb2.SubmitStreamResponse], None]
# Initial metadata of a SubmitStream: the scheduler takes several submissions per message, at most
# the first header's value, in messages of at most the second's bytes (its gRPC receive limit, so a
# client's batches stay under it; a larger message ends the stream with RESOURCE_EXHAUSTED).
BATCH_HEADER = "tasktide-submit-batch"
BYTES_HEADER = "tasktide-submit-bytes"


@dataclass
class _Waiting:
    req: scheduler_pb2.SubmitStreamRequest
    caller: Caller
    answer: Answer


class SubmissionPool:
    def __init__(self, admission: Admission, limit: int, message_bytes: int) -> None:
        self.admission = admission
        self.limit = limit
        self.message_bytes = message_bytes  # the largest message the server takes, announced
        self._waiting: list[_Waiting] = []
        self._drain: asyncio.Task[None] | None = None

    def put(self, req: scheduler_pb2.SubmitStreamRequest, caller: Caller, answer: Answer) -> None:
        """Admit `req` with the next batch; `answer` gets its response (called on the event loop)."""
        self._waiting.append(_Waiting(req, caller, answer))
        if self._drain is None:
            self._drain = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.limit]
                del self._waiting[: len(batch)]
                try:
                    await self._admit(batch)
                except Exception:  # noqa: BLE001 - a defect here must not strand the rest
                    log.exception("admitting %d streamed submissions failed", len(batch))
                    for w in batch:
                        w.answer(_refusal(w.req.seq, ServiceError("Scheduler: the submission could not be admitted")))
        finally:
            self._drain = None

    async def _admit(self, batch: list[_Waiting]) -> None:
        by_caller: list[tuple[Caller, list[_Waiting]]] = []  # in practice one caller, or a few
        for w in batch:
            for caller, group in by_caller:
                if caller == w.caller:
                    group.append(w)
                    break
            else:
                by_caller.append((w.caller, [w]))
        for caller, group in by_caller:
            results = await self.admission.submit_each([w.req.spec for w in group], caller)
            for w, result in zip(group, results, strict=True):
                if isinstance(result, ServiceError):
                    w.answer(_refusal(w.req.seq, result))
                else:
                    w.answer(scheduler_pb2.SubmitStreamResponse(seq=w.req.seq, result=result))

    async def stream(
        self,
        requests: AsyncIterator[scheduler_pb2.SubmitStreamRequest],
        caller: Caller,
        announce: Callable[[tuple[tuple[str, str], ...]], Awaitable[None]],
    ) -> AsyncIterator[scheduler_pb2.SubmitStreamResponse]:
        """One SubmitStream: its submissions go to the pool, their answers come back in the order
        they are admitted (each names its sequence number). `announce` sends the stream's initial
        metadata (BATCH_HEADER with `limit`, BYTES_HEADER with `message_bytes`)."""
        ready: list[scheduler_pb2.SubmitStreamResponse] = []
        arrived, room = asyncio.Event(), asyncio.Event()
        room.set()
        unanswered = 0
        batched = False  # the client sends batches, so it reads them

        def answer(resp: scheduler_pb2.SubmitStreamResponse) -> None:
            ready.append(resp)
            arrived.set()

        async def read() -> None:
            nonlocal unanswered, batched
            try:
                async for req in requests:
                    entries = _entries(req)
                    if len(req.batch):
                        batched = True
                    for k, entry in enumerate(entries):
                        unanswered += 1
                        if k < self.limit:
                            self.put(entry, caller, answer)
                        else:
                            over = f"{len(entries)} submissions in one message; the limit is {self.limit}"
                            answer(_refusal(entry.seq, ResourceExhausted(over)))
                    if unanswered >= self.limit:
                        room.clear()
                        await room.wait()
            finally:
                arrived.set()

        await announce(((BATCH_HEADER, str(self.limit)), (BYTES_HEADER, str(self.message_bytes))))
        reader = asyncio.create_task(read())
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                while ready:
                    out = ready[:]
                    ready.clear()
                    unanswered -= len(out)
                    if unanswered < self.limit:
                        room.set()
                    if batched and len(out) > 1:
                        yield scheduler_pb2.SubmitStreamResponse(batch=out)
                    else:
                        for resp in out:
                            yield resp
                if reader.done() and unanswered == 0:
                    reader.result()  # the stream's own failure (a malformed message) ends the call
                    return
        finally:
            reader.cancel()


def _entries(req: scheduler_pb2.SubmitStreamRequest) -> list[scheduler_pb2.SubmitStreamRequest]:
    """The submissions of one message: itself, or its batch."""
    if not len(req.batch):
        return [req]
    if req.seq or req.HasField("spec"):
        raise InvalidArgument("SubmitStream: a message holds one submission (seq, spec) or a batch, not both")
    if any(len(e.batch) for e in req.batch):
        raise InvalidArgument("SubmitStream: an entry of a batch holds no batch of its own")
    return list(req.batch)


def _refusal(seq: int, error: ServiceError) -> scheduler_pb2.SubmitStreamResponse:
    return scheduler_pb2.SubmitStreamResponse(seq=seq, error_code=error.code.value[0], error_message=str(error))
