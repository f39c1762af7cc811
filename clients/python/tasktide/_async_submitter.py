"""The stream transport of the AsyncClient: submissions over one long-lived SubmitStream.

As the blocking client's (_submitter.py): each submission gets a sequence number and a future that
the stream's reader task resolves when the answer with that number arrives. The coroutines of the
event loop share the stream: the submissions queued while a message is being sent go in the next
one together, up to what the scheduler announced it takes (one per message when it announced
nothing), and their answers come back together. The stream opens on first use and is replaced
before a submission when it sat idle for MAX_IDLE_SECONDS; when it breaks, the submissions it still
had in flight fail with its error (Unavailable) and the next submission opens a new one. When its
reader task is cancelled (the event loop ends with the client open), the stream ends its call
before the loop closes (_call_end.py), and a submission after that opens a new one. Each
`submit` waits for its answer: an answered task is in Redis. A submission whose caller stops
waiting (cancelled) is forgotten; the task may still have been accepted.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Sequence

import grpc

from tasktide._call_end import end_call
from tasktide._errors import stream_closed, translate
from tasktide._submitter import (
    MAX_IDLE_SECONDS,
    MAX_IN_FLIGHT,
    NO_BATCHES,
    batched,
    entry_bytes,
    message_bounds,
    settle,
)
from tasktide._transport import AsyncUnarySubmitter
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2

log = logging.getLogger("tasktide.client")

Request = scheduler_pb2.SubmitStreamRequest


class _Stream:
    """One SubmitStream call: what waits to be sent, and the submissions waiting for answers."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerStub, address: str) -> None:
        self.address = address
        self.queue: list[Request] = []  # bounded by the submitter's MAX_IN_FLIGHT
        self.queued = asyncio.Event()
        self.ending = False
        self.pending: dict[int, asyncio.Future[str]] = {}
        self.open = True
        self.used = time.monotonic()
        self.bounds = NO_BATCHES  # until the scheduler's initial metadata announces more
        # Opened outside the caller's context: the stream outlives the submission that opens it.
        ctx = contextvars.Context()
        self.call = ctx.run(stub.SubmitStream, self._requests())
        self.reader = ctx.run(asyncio.get_running_loop().create_task, self._read())

    def send(self, seq: int, spec: task_pb2.TaskSpec) -> asyncio.Future[str]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending[seq] = fut
        self.queue.append(Request(seq=seq, spec=spec))
        self.queued.set()
        self.used = time.monotonic()
        return fut

    def end(self) -> None:
        """No more submissions: the request stream ends once what is queued is sent."""
        self.ending = True
        self.queued.set()

    async def _requests(self) -> AsyncIterator[Request]:
        while True:
            await self.queued.wait()
            self.queued.clear()
            while self.queue:
                yield batched(self._take())
            if self.ending:
                return

    def _take(self) -> list[Request]:
        """The next message's submissions: as many queued as the scheduler takes, under the size
        it takes together (the first whatever its size)."""
        end, size = 1, 0
        while end < min(len(self.queue), self.bounds.per_message):
            size = size or entry_bytes(self.queue[0])
            size += entry_bytes(self.queue[end])
            if size > self.bounds.batch_bytes:
                break
            end += 1
        batch = self.queue[:end]
        del self.queue[:end]
        return batch

    async def _read(self) -> None:
        error: Exception = stream_closed(self.address)
        try:
            self.bounds = message_bounds(await self.call.initial_metadata())
            async for message in self.call:
                for resp in message.batch or (message,):
                    fut = self.pending.pop(resp.seq, None)
                    if fut is not None and not fut.done():  # else forgotten: its caller stopped waiting
                        settle(fut, resp)
        except grpc.RpcError as exc:
            error = translate(exc, self.address)
        except asyncio.CancelledError:  # the client closes it, or the event loop is ending
            self._fail(error)
            await end_call(self.call)
        finally:
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        """The stream takes no more submissions; those still waiting for answers fail."""
        self.open = False
        left, self.pending = self.pending, {}
        for fut in left.values():
            if not fut.done():
                fut.set_exception(error)


class AsyncStreamSubmitter:
    """The AsyncClient's default transport; one per client, used from the client's event loop."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerStub, address: str) -> None:
        self._stub = stub
        self._address = address
        self._unary = AsyncUnarySubmitter(stub, address)  # batches: one SubmitBatch call
        self._seq = 0
        self._stream: _Stream | None = None
        self._slots: asyncio.Semaphore | None = None  # made on the client's loop, at first use

    async def submit(self, spec: task_pb2.TaskSpec) -> str:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        async with self._slots:
            stream = self._current()
            self._seq += 1
            seq = self._seq
            fut = stream.send(seq, spec)
            try:
                return await fut
            except asyncio.CancelledError:
                stream.pending.pop(seq, None)
                raise

    def _current(self) -> _Stream:
        stream = self._stream
        if stream is not None and stream.open and not stream.pending:
            if time.monotonic() - stream.used > MAX_IDLE_SECONDS:
                stream.end()
                stream = None
        if stream is None or not stream.open:
            stream = self._stream = _Stream(self._stub, self._address)
        return stream

    async def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        return await self._unary.submit_batch(specs)

    async def flush(self, timeout: float | None = None) -> None:
        return None  # every submission is confirmed before submit returns

    async def close(self) -> None:
        """End the stream; its reader reads what is still on its way for a moment, then stops."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        stream.end()
        try:
            await asyncio.wait_for(asyncio.shield(stream.reader), 5.0)
        except TimeoutError:
            stream.reader.cancel()  # it ends the call
            await stream.reader
