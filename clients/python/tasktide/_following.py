"""How the blocking client's `wait` and `result` hear that a task is final: one Results.Follow stream
per Client, shared by every waiting thread.

A wait names its task id on the stream and returns when the results service answers that id with
its final result; a wait that times out is taken off, and the id is forgotten on the stream once no
wait is left for it. The stream opens on first use and stays open; a stream left idle for
MAX_IDLE_SECONDS is ended before the next wait opens a fresh one (a connection dropped while idle
costs nothing then).

When the stream is lost (a restarted or unreachable results service), its thread opens a new one
after a pause (RECONNECT_INITIAL_MS, 1.6 times longer per failure in a row, at most
RECONNECT_MAX_MS) and names every id still awaited: a wait outlives a restart. The service accepts
a stream by sending its headers at once. Once it has accepted one of this client's streams, a lost
service is a service restarting: the streams are opened again for as long as waits are left, and
each wait ends by its own timeout. A platform this client never reached is reported instead: after
MAX_FAILURES streams in a row refused (about 3 s), the waits go to Wait calls, which report the
error of each one ("cannot reach tasktide at ..."), as any refusal of the stream (credentials, a
limit) does; a server without Follow (UNIMPLEMENTED, an older version) gets Wait calls for good.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

import grpc

from tasktide._call_end import join_reader
from tasktide._settings import RECONNECT_INITIAL_MS, RECONNECT_MAX_MS
from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2

MAX_FOLLOWED = 10_000  # ids followed at once (the server's default batch limit); more waits use Wait
MAX_IDLE_SECONDS = 30.0
MAX_FAILURES = 5  # streams refused in a row, the service never reached, before the waits use Wait
# In the headers the service sends as it accepts a Follow stream (services/results/follow.py).
FOLLOW_HEADER = "tasktide-follow"
TASK_ID = re.compile(r"[0-9a-f]{32}")
# Statuses after which the stream is opened again: the service was away, restarting or overloaded.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OK,
    }
)
_END = None  # put on a stream's request queue to end it

log = logging.getLogger("tasktide.client")

# A wait's future: the final result, or None when the wait should use Wait calls instead.
Answer = Future[task_pb2.TaskResult | None]
F = TypeVar("F")


def accepting(headers: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """True when these headers of a Follow stream say the service accepted it."""
    return any(key == FOLLOW_HEADER for key, _ in headers or ())


def reopen_after(code: grpc.StatusCode, failures: int, reached: bool) -> float | None:
    """The rule of both followers once a stream ended with `code`, `failures` streams in a row
    refused (this one included): the seconds to pause before the next stream, or None when the
    waits go to Wait calls (a refusal, or a service this client never reached)."""
    if code not in TRANSIENT or (failures >= MAX_FAILURES and not reached):
        return None
    if failures == 1 and reached:
        log.warning("the results service was lost (%s); waiting for it to be back", code)
    return float(min(RECONNECT_INITIAL_MS * 1.6 ** max(failures - 1, 0), RECONNECT_MAX_MS) / 1000)


def take_off(waiters: dict[str, set[F]], task_id: str, fut: F) -> bool:
    """Takes `fut` off the waits for `task_id`; True when it was the last one (the id is to be
    forgotten), False when others wait or it was answered meanwhile."""
    waiting = waiters.get(task_id)
    if waiting is None or fut not in waiting:
        return False
    waiting.discard(fut)
    if waiting:
        return False
    del waiters[task_id]
    return True


class _Stream:
    def __init__(self, stub: results_pb2_grpc.ResultsStub, ids: list[str]) -> None:
        self.requests: queue.SimpleQueue[results_pb2.FollowRequest | None] = queue.SimpleQueue()
        self.used = time.monotonic()
        self.accepted = False  # the server has sent its headers on it
        if ids:
            self.requests.put(results_pb2.FollowRequest(task_ids=ids))
        # Opened outside the caller's context: the stream outlives the wait that opens it.
        self.responses = contextvars.Context().run(stub.Follow, self._requests())

    def _requests(self) -> Iterator[results_pb2.FollowRequest]:
        while True:
            req = self.requests.get()
            if req is _END:
                return
            yield req

    def end(self) -> None:
        self.requests.put(_END)
        self.responses.cancel()


class Follower:
    """Thread-safe; one per Client."""

    def __init__(self, stub: results_pb2_grpc.ResultsStub) -> None:
        self._stub = stub
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Answer]] = {}
        self._stream: _Stream | None = None
        self._reopening = False  # a lost stream's thread is about to open the next one
        self.opened = 0  # streams opened (for tests and diagnostics)
        self.unsupported = False  # the server answered Follow with UNIMPLEMENTED
        self.reached = False  # the service has accepted a stream of this client
        self._closed = False
        self._thread: threading.Thread | None = None  # reads the streams, one after another
        self._stopped = threading.Event()  # set by close(): wakes the thread's pause

    def wait(self, task_id: str, timeout: float | None) -> task_pb2.TaskResult | None:
        """The final result of `task_id`; None when the stream cannot serve it (the caller uses
        Wait calls). Raises TimeoutError once `timeout` seconds have passed."""
        if self.unsupported or not TASK_ID.fullmatch(task_id):
            return None
        fut: Answer = Future()
        with self._lock:
            waiters = self._waiters.get(task_id)
            if self._closed or (waiters is None and len(self._waiters) >= MAX_FOLLOWED):
                return None
            first = waiters is None
            if waiters is None:
                waiters = self._waiters[task_id] = set()
            waiters.add(fut)
            stream = self._stream
            now = time.monotonic()
            if stream is not None and now - stream.used > MAX_IDLE_SECONDS and len(self._waiters) == 1:
                stream.end()  # its thread ends without opening another: self._stream is not it
                stream = self._stream = None
            if stream is None and not self._reopening:
                self._open()  # names every id awaited, this one too
            elif stream is not None:
                stream.used = now
                if first:
                    stream.requests.put(results_pb2.FollowRequest(task_ids=[task_id]))
        try:
            return fut.result(timeout)
        except FutureTimeout:
            self._drop(task_id, fut)
            if fut.done():  # answered as it timed out
                return fut.result()
            raise TimeoutError(task_id) from None

    def _drop(self, task_id: str, fut: Answer) -> None:
        with self._lock:
            if take_off(self._waiters, task_id, fut) and self._stream is not None:
                self._stream.requests.put(results_pb2.FollowRequest(forget=[task_id]))

    def _open(self) -> None:
        """Under the lock: a new stream naming every id awaited, and its thread."""
        stream = self._stream = _Stream(self._stub, list(self._waiters))
        self.opened += 1
        self._thread = threading.Thread(target=self._run, args=(stream,), name="tasktide-follow", daemon=True)
        self._thread.start()

    def _run(self, stream: _Stream) -> None:
        """Reads `stream` until it ends, then opens the next one while waits are left, after a
        pause that grows with the failures in a row."""
        failures = 0
        while True:
            code = self._read(stream)
            stream.requests.put(_END)  # ends the thread that sends its requests
            with self._lock:
                if self._stream is not stream:
                    return  # ended by this client (idle, or closed)
                self._stream = None
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    self.unsupported = True
                if code in TRANSIENT and (not self._waiters or self._closed):
                    return
                failures = 0 if stream.accepted else failures + 1
                pause = reopen_after(code, failures, self.reached)
                if pause is None:
                    self._release()
                    return
                self._reopening = True
            log.debug("Follow stream lost (%s); opening another in %.1f s", code, pause)
            self._stopped.wait(pause)
            with self._lock:
                self._reopening = False
                if self._closed or not self._waiters or self._stream is not None:
                    return
                stream = self._stream = _Stream(self._stub, list(self._waiters))
                self.opened += 1

    def _read(self, stream: _Stream) -> grpc.StatusCode:
        """The answers of `stream` handed to their waits; the status it ended with."""
        try:
            if accepting(stream.responses.initial_metadata()):
                stream.accepted = self.reached = True
            for resp in stream.responses:
                stream.accepted = self.reached = True  # a service that sends no FOLLOW_HEADER
                with self._lock:
                    ready = [(r, self._waiters.pop(r.task_id, set())) for r in resp.results]
                for result, waiters in ready:
                    for fut in waiters:
                        fut.set_result(result)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def _release(self) -> None:
        """Under the lock: every wait goes to Wait calls."""
        waiting, self._waiters = self._waiters, {}
        for waiters in waiting.values():
            for fut in waiters:
                fut.set_result(None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.end()
            self._release()
            thread = self._thread
        self._stopped.set()
        join_reader(thread, stream.responses if stream is not None else None)
