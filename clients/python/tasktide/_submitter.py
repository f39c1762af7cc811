"""The stream transport of the blocking client: submissions over one long-lived SubmitStream.

Each submission gets a sequence number and a Future; one reader thread per stream resolves them as
the scheduler's answers arrive. Submissions from many threads share the stream: those queued while
a message is being sent go in the next one together (up to what the scheduler announced it
takes), and their answers come back together. The stream opens on first use; when it breaks, the
submissions it still had in flight fail with its error and the next submission opens a new one.
Confirmed mode waits for each answer; pipelined mode (ClientSettings.pipelined_submit) returns a
Future of the id at once and `flush` waits for them.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import NamedTuple, Protocol

import grpc

from tasktide._call_end import join_reader
from tasktide._errors import error_from_status, stream_closed, translate
from tasktide._exceptions import ServiceError
from tasktide._transport import UnarySubmitter
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2

_END = None  # put on a stream's request queue to close it
MAX_IN_FLIGHT = 10_000  # unconfirmed submissions at once; submit() waits beyond that
REFUSALS_KEPT = 100  # refusals flush() names in full; it counts the others
# A stream left idle this long is closed before the next submission opens a fresh one, so that a
# connection dropped while idle (a proxy's idle timeout, a server restart) costs no failed task.
MAX_IDLE_SECONDS = 30.0
# A process that exits with pipelined submissions unconfirmed waits this long for them (atexit).
EXIT_FLUSH_SECONDS = 10.0
# The scheduler's initial metadata names how many submissions one message may carry; the client
# sends at most this many, whatever it names.
BATCH_HEADER = "tasktide-submit-batch"
MAX_PER_MESSAGE = 1_000
# It also names the largest message it takes (its gRPC receive limit). A message of several
# submissions stays under that and under MAX_BATCH_BYTES (all a scheduler that names no size gets;
# one takes 16 MiB by default); a submission larger than the bound goes alone.
BYTES_HEADER = "tasktide-submit-bytes"
MAX_BATCH_BYTES = 1024 * 1024
# What an entry adds to a message of several beside its own bytes: its field tag and its length
# (a varint of at most 5 bytes).
ENTRY_FRAMING = 6

log = logging.getLogger("tasktide.client")


def _flush_at_exit(ref: weakref.ReferenceType[StreamSubmitter]) -> None:
    submitter = ref()
    if submitter is None:
        return
    try:
        submitter.flush(EXIT_FLUSH_SECONDS)
    except Exception as exc:  # noqa: BLE001 - the process is ending: say what was not confirmed
        log.error("tasktide: pipelined submissions not all confirmed at exit: %s", exc)


class _Stream:
    def __init__(self, stub: scheduler_pb2_grpc.SchedulerStub, address: str) -> None:
        self.requests: queue.SimpleQueue[scheduler_pb2.SubmitStreamRequest | None] = queue.SimpleQueue()
        self.pending: dict[int, Future[str]] = {}
        self.open = True
        self.address = address
        self.used = time.monotonic()
        # What one message may carry: 1 submission until the scheduler announces more (its initial
        # metadata, read by the stream's reader thread; a scheduler without batches announces none).
        self.bounds = NO_BATCHES
        self.reader: threading.Thread | None = None  # the thread that reads its answers
        # Opened outside the caller's context: the stream outlives the submission that opens it, so
        # it belongs to no submission's trace (each submission is traced by the interceptors).
        self.responses = contextvars.Context().run(stub.SubmitStream, self._requests())

    def _requests(self) -> Iterator[scheduler_pb2.SubmitStreamRequest]:
        """What was queued while the previous message was being sent goes as one message."""
        carry: scheduler_pb2.SubmitStreamRequest | None = None  # the head of the next message
        while True:
            req = carry if carry is not None else self.requests.get()
            carry = None
            if req is _END:
                return
            batch, size = [req], 0
            bounds = self.bounds
            if bounds.per_message > 1 and len(self.pending) > 1:
                time.sleep(0)  # others in flight: let threads woken by their answers queue theirs
            while len(batch) < bounds.per_message:
                try:
                    more = self.requests.get_nowait()
                except queue.Empty:
                    break
                if more is _END:
                    yield batched(batch)
                    return
                size = size or entry_bytes(req)
                size += entry_bytes(more)
                if size > bounds.batch_bytes:
                    carry = more
                    break
                batch.append(more)
            yield batched(batch)

    def announced(self) -> None:
        """Read the scheduler's initial metadata (waits for it): what a message may carry."""
        self.bounds = message_bounds(self.responses.initial_metadata())


class MessageBounds(NamedTuple):
    """What one SubmitStream message may carry: submissions, and bytes when it carries several."""

    per_message: int
    batch_bytes: int


NO_BATCHES = MessageBounds(1, MAX_BATCH_BYTES)


def message_bounds(metadata: Iterable[tuple[str, str | bytes]] | None) -> MessageBounds:
    """What one message may carry, from a SubmitStream's initial metadata: as many submissions as
    the scheduler announced (BATCH_HEADER), at most MAX_PER_MESSAGE, 1 when it announced none; and
    bytes under the size it announced (BYTES_HEADER) and MAX_BATCH_BYTES. A value that is not a
    decimal number (or a size of 0) is ignored, as if not announced."""
    per, size = 1, MAX_BATCH_BYTES
    for key, value in metadata or ():
        n = _decimal(value)
        if key == BATCH_HEADER and n is not None:
            per = max(1, min(n, MAX_PER_MESSAGE))
        elif key == BYTES_HEADER and n:
            size = min(n, MAX_BATCH_BYTES)
    return MessageBounds(per, size)


def _decimal(value: str | bytes) -> int | None:
    """A header's value as a whole number: ASCII digits only (no sign, space or unit). Longer
    numbers than any bound read as 10**12, so they cost no conversion of a huge string."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 12 else 10**12


def entry_bytes(req: scheduler_pb2.SubmitStreamRequest) -> int:
    """What a submission weighs in a message of several (its bytes and its framing there)."""
    return req.ByteSize() + ENTRY_FRAMING


class _Settles(Protocol):
    """A future of a submission's id: concurrent.futures' or asyncio's."""

    def set_result(self, result: str, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


def settle(fut: _Settles, resp: scheduler_pb2.SubmitStreamResponse) -> None:
    """Resolve a submission's future with its answer: the task's id, or the refusal's error."""
    if resp.error_code:
        fut.set_exception(error_from_status(resp.error_code, resp.error_message))
    else:
        fut.set_result(resp.result.task_id)


def batched(batch: list[scheduler_pb2.SubmitStreamRequest]) -> scheduler_pb2.SubmitStreamRequest:
    return batch[0] if len(batch) == 1 else scheduler_pb2.SubmitStreamRequest(batch=batch)


class StreamSubmitter:
    """Thread-safe; one per Client. `pipelined`: submit returns a Future of the id at once."""

    def __init__(self, stub: scheduler_pb2_grpc.SchedulerStub, address: str, pipelined: bool = False) -> None:
        self._stub = stub
        self._address = address
        self._pipelined = pipelined
        self._unary = UnarySubmitter(stub, address)  # batches: one SubmitBatch call
        self._lock = threading.Lock()
        self._seq = 0
        self._stream: _Stream | None = None
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._unconfirmed: set[Future[str]] = set()
        # Failures not yet reported by flush(): the first REFUSALS_KEPT, then a count of the others.
        self._refused: list[BaseException] = []
        self._refused_more = 0
        self._exit_flush = False  # registered with atexit on the first pipelined submission

    def submit(self, spec: task_pb2.TaskSpec) -> str | Future[str]:
        """The task's id; pipelined: a Future of it."""
        if self._pipelined:
            return self.send(spec, True)
        return self.send(spec).result()

    def submit_batch(self, specs: Sequence[task_pb2.TaskSpec]) -> list[str]:
        return self._unary.submit_batch(specs)

    def send(self, spec: task_pb2.TaskSpec, pipelined: bool = False) -> Future[str]:
        """The id to come. `pipelined`: the caller does not wait for it, so flush() does."""
        fut: Future[str] = Future()
        if pipelined:
            self._slots.acquire()
            fut.add_done_callback(self._settled)
        with self._lock:
            if pipelined:
                self._unconfirmed.add(fut)
                if not self._exit_flush:
                    self._exit_flush = True
                    atexit.register(_flush_at_exit, weakref.ref(self))
            stream = self._stream
            now = time.monotonic()
            if stream is not None and stream.open and not stream.pending and now - stream.used > MAX_IDLE_SECONDS:
                stream.requests.put(_END)
                stream = None
            if stream is None or not stream.open:
                stream = self._stream = _Stream(self._stub, self._address)
                stream.reader = threading.Thread(target=self._read, args=(stream,), name="tasktide-submit", daemon=True)
                stream.reader.start()
            stream.used = now
            self._seq += 1
            stream.pending[self._seq] = fut
            stream.requests.put(scheduler_pb2.SubmitStreamRequest(seq=self._seq, spec=spec))
        return fut

    def _settled(self, fut: Future[str]) -> None:
        with self._lock:
            self._unconfirmed.discard(fut)
            exc = fut.exception()
            if exc is not None:
                if len(self._refused) < REFUSALS_KEPT:
                    self._refused.append(exc)
                else:
                    self._refused_more += 1
        self._slots.release()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every pipelined submission made so far is confirmed or refused; raise the
        first refusal since the last flush (the others are in its notes)."""
        with self._lock:
            waiting = list(self._unconfirmed)
        futures_wait(waiting, timeout)
        if any(not f.done() for f in waiting):
            raise ServiceError(f"submissions not confirmed within {timeout} s", "DEADLINE_EXCEEDED")
        while True:  # a future's callbacks (_settled) run just after its waiters wake
            with self._lock:
                if not any(f in self._unconfirmed for f in waiting):
                    refused, self._refused = self._refused, []
                    more, self._refused_more = self._refused_more, 0
                    break
            time.sleep(0.0005)
        if refused:
            first = refused[0]
            for other in refused[1:]:
                first.add_note(f"also refused: {other}")
            if more:
                first.add_note(f"and {more} more refused (each one's Future holds its error)")
            raise first

    def _read(self, stream: _Stream) -> None:
        error: Exception = stream_closed(self._address)
        try:
            stream.announced()
            for message in stream.responses:
                answers = message.batch or (message,)
                with self._lock:
                    futs = [stream.pending.pop(resp.seq, None) for resp in answers]
                for resp, fut in zip(answers, futs, strict=True):
                    if fut is not None:
                        settle(fut, resp)
        except grpc.RpcError as exc:
            error = translate(exc, self._address)
        with self._lock:  # no submission joins this stream after this point
            stream.open = False
            left, stream.pending = stream.pending, {}
        for fut in left.values():
            fut.set_exception(error)

    def close(self) -> None:
        """Wait for unconfirmed submissions (see flush), then end the stream; answers still on their
        way are read before its thread ends."""
        try:
            if self._pipelined:
                self.flush()
        finally:
            self._end()

    def _end(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
            if stream is not None and stream.open:
                stream.requests.put(_END)
        if stream is not None:  # the scheduler ends a half-closed stream once it has answered
            join_reader(stream.reader, stream.responses)
