"""The asyncio client's Results.Follow stream: what _following.py does for the blocking client, for
the coroutines of one event loop. One task per stream reads it; ids named (or forgotten) while a
request is being written travel together in the next one, written by another task, so what waits
to be sent is bounded by the ids followed (MAX_FOLLOWED). The policies are _following.py's: idle,
reopening (for as long as waits are left once the service accepted a stream), fallback to Wait
calls. When the reading task is cancelled (the client closes, or the
event loop ends with the client open), it ends its call before the loop closes (_call_end.py); a
wait after that opens a new stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypeAlias

import grpc

from tasktide._call_end import end_call
from tasktide._following import (
    MAX_FOLLOWED,
    MAX_IDLE_SECONDS,
    TASK_ID,
    TRANSIENT,
    accepting,
    reopen_after,
    take_off,
)
from tasktide.v1 import results_pb2, results_pb2_grpc, task_pb2

log = logging.getLogger("tasktide.client")

# How long close() waits for the service to end the stream it half-closed.
CLOSE_SECONDS = 5.0

# A wait's future: the final result, or None when the wait should use Wait calls instead.
Answer = asyncio.Future[task_pb2.TaskResult | None]
_FollowCall: TypeAlias = "grpc.aio.StreamStreamCall[results_pb2.FollowRequest, results_pb2.FollowResponse]"


class AsyncFollower:
    """One per AsyncClient, used on the loop the client's channels belong to."""

    def __init__(self, stub: results_pb2_grpc.ResultsStub) -> None:
        self._stub = stub
        self._waiters: dict[str, set[Answer]] = {}
        self._to_follow: set[str] = set()
        self._to_forget: set[str] = set()
        self._pending = asyncio.Event()  # something to send
        self._task: asyncio.Task[None] | None = None  # the stream's reader, then its reopening
        self._used = 0.0
        self.opened = 0
        self.unsupported = False
        self.reached = False  # the service has accepted a stream of this client
        self._closed = False
        self._named: set[str] = set()  # by the current stream, neither answered nor forgotten yet
        self._streaming = False  # the task reads a stream (else it pauses before reopening one)

    async def wait(self, task_id: str, timeout: float | None) -> task_pb2.TaskResult | None:
        """The final result of `task_id`; None when the stream cannot serve it (the caller uses
        Wait calls). Raises TimeoutError once `timeout` seconds have passed."""
        if self.unsupported or self._closed or not TASK_ID.fullmatch(task_id):
            return None
        waiters = self._waiters.get(task_id)
        if waiters is None and len(self._waiters) >= MAX_FOLLOWED:
            return None
        fut: Answer = asyncio.get_running_loop().create_future()
        now = time.monotonic()
        if self._task is not None and not self._waiters and now - self._used > MAX_IDLE_SECONDS:
            self._task.cancel()  # a fresh stream rather than one idle this long
            self._task = None
        self._used = now
        if waiters is None:
            waiters = self._waiters[task_id] = set()
            self._to_forget.discard(task_id)
            self._to_follow.add(task_id)
            self._pending.set()
        waiters.add(fut)
        if self._task is None or self._task.done():  # done: cancelled while it paused to reopen
            self._task = asyncio.create_task(self._run())
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            self._drop(task_id, fut)
            if fut.done():  # answered as it timed out
                return fut.result()
            raise

    def _drop(self, task_id: str, fut: Answer) -> None:
        if not take_off(self._waiters, task_id, fut):
            return
        if task_id in self._to_follow:
            self._to_follow.discard(task_id)  # never named: nothing to forget
        else:
            self._to_forget.add(task_id)
            self._pending.set()

    async def _run(self) -> None:
        """Streams, one after another while waits are left: each names every id awaited."""
        failures = 0
        while True:
            self._to_follow, self._to_forget, self._named = set(self._waiters), set(), set()
            self._pending.set()
            self.opened += 1
            call = self._stub.Follow()
            writer = asyncio.create_task(self._write(call))
            accepted = False
            code = grpc.StatusCode.OK
            self._streaming = True
            try:
                if accepting(await call.initial_metadata()):
                    accepted = self.reached = True
                async for resp in call:
                    accepted = self.reached = True  # a service that sends no FOLLOW_HEADER
                    for r in resp.results:
                        self._named.discard(r.task_id)
                        for fut in self._waiters.pop(r.task_id, ()):
                            if not fut.done():
                                fut.set_result(r)
                if self._closed:  # ended on the half-close: let the writer see it done
                    await asyncio.wait({writer}, timeout=CLOSE_SECONDS)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            except asyncio.CancelledError:  # closed, replaced, or the event loop is ending
                writer.cancel()
                if self._task is asyncio.current_task():
                    self._task = None
                    self._release()  # waits left go to Wait calls
                await end_call(call)
                raise
            finally:
                self._streaming = False
                writer.cancel()
                call.cancel()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                self.unsupported = True
            failures = 0 if accepted else failures + 1
            if code in TRANSIENT and (not self._waiters or self._closed):
                break
            pause = reopen_after(code, failures, self.reached)
            if pause is None:
                self._release()
                break
            log.debug("Follow stream lost (%s); opening another in %.1f s", code, pause)
            await asyncio.sleep(pause)
            if not self._waiters or self._closed:
                break
        if self._task is asyncio.current_task():
            self._task = None

    async def _write(self, call: _FollowCall) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            while True:
                await self._pending.wait()
                self._pending.clear()
                if self._closed:  # the service ends a stream that follows nothing and is half-closed
                    if self._named:
                        await call.write(results_pb2.FollowRequest(forget=sorted(self._named)))
                    await call.done_writing()
                    return
                req = results_pb2.FollowRequest(task_ids=sorted(self._to_follow), forget=sorted(self._to_forget))
                self._to_follow, self._to_forget = set(), set()
                self._named = (self._named | set(req.task_ids)) - set(req.forget)
                if req.task_ids or req.forget:
                    await call.write(req)

    def _release(self) -> None:
        """Every wait goes to Wait calls."""
        waiting, self._waiters = self._waiters, {}
        for waiters in waiting.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def close(self) -> None:
        """End the stream as a client that is done: it forgets what it named and half-closes,
        and the service ends it (CLOSE_SECONDS at most, then it is cancelled)."""
        self._closed = True
        self._release()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        self._pending.set()
        if self._streaming:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), CLOSE_SECONDS)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
