"""Where task code runs besides the worker's threads (_slots.py): the event loop, or child processes.

Each backend starts an attempt and returns a Running handle that can interrupt it (a soft time
limit, a cooperative cancel) or stop it hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import struct
import sys
from collections.abc import Callable

from tasktide._app import App
from tasktide.v1 import task_pb2, worker_pb2
from tasktide.worker._context import TaskContext
from tasktide.worker._execute import ProgressSink, interrupted, run_async

log = logging.getLogger("tasktide.worker")

FRAME = struct.Struct(">cI")  # kind, length; kinds: R ready, A assignment, O outcome, P progress


class Running:
    """One attempt in progress. `future` is the pool's; `outcome` resolves to the attempt's Outcome,
    or to the outcome of a hard stop if that came first (one future to wait on)."""

    def __init__(
        self, future: asyncio.Future[task_pb2.Outcome], interrupt: Callable[[str], None], kill: Callable[[], None]
    ) -> None:
        self.future = future
        self.outcome: asyncio.Future[task_pb2.Outcome] = asyncio.get_running_loop().create_future()
        self._interrupt = interrupt
        self._kill = kill
        future.add_done_callback(self._finished)

    def _finished(self, f: asyncio.Future[task_pb2.Outcome]) -> None:
        if f.cancelled():
            if not self.outcome.done():
                self.outcome.cancel()
            return
        exc = f.exception()  # retrieved even for a stopped attempt, so it is never reported as lost
        if self.outcome.done():
            return
        if exc is not None:
            self.outcome.set_exception(exc)
        else:
            self.outcome.set_result(f.result())

    def interrupt(self, kind: str) -> None:
        """`soft` (time limit) or `cancel`: a signal the task can handle."""
        if not self.future.done():
            self._interrupt(kind)

    def stop(self, outcome: task_pb2.Outcome) -> None:
        if not self.future.done() and not self.outcome.done():
            self._kill()
            self.outcome.set_result(outcome)


class AsyncioBackend:
    """`async def` tasks run on the worker's loop; interruptions cancel the asyncio task."""

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id

    async def start(self, a: worker_pb2.Assignment, ctx: TaskContext) -> Running:
        inner = asyncio.ensure_future(run_async(self.app, a, ctx, self.worker_id))
        reason: list[str] = []

        async def supervised() -> task_pb2.Outcome:
            try:
                return await inner
            except asyncio.CancelledError:
                return interrupted(a, self.worker_id, soft_limit=bool(reason) and reason[0] == "soft")

        def interrupt(kind: str) -> None:
            reason.append(kind)
            inner.cancel()

        def kill() -> None:
            inner.cancel()

        return Running(asyncio.ensure_future(supervised()), interrupt, kill)

    async def close(self) -> None:
        return None


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def run(self, a: worker_pb2.Assignment, progress: ProgressSink) -> task_pb2.Outcome:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = a.SerializeToString()
        self.proc.stdin.write(FRAME.pack(b"A", len(data)) + data)
        await self.proc.stdin.drain()
        while True:
            kind, size = FRAME.unpack(await self.proc.stdout.readexactly(FRAME.size))
            body = await self.proc.stdout.readexactly(size)
            if kind == b"P":
                progress(worker_pb2.ProgressReport.FromString(body))
            elif kind == b"O":
                return task_pb2.Outcome.FromString(body)


class ProcessBackend:
    """Child processes started fresh (`python -m tasktide.worker._child MODULE:APP`): no state, no
    gRPC channel and no lock is inherited through fork. Each runs one task at a time; assignments
    and outcomes cross the pipe as protobuf. A hard stop kills the child and starts another.
    `resize` starts children, or ends idle ones (and those beyond the size as they come back)."""

    def __init__(self, app_target: str, concurrency: int, worker_id: str, progress: ProgressSink) -> None:
        if not app_target:
            raise ValueError("the process pool needs the app as MODULE:APP")
        self.app_target = app_target
        self.concurrency = concurrency
        self.worker_id = worker_id
        self.progress = progress
        self.idle: asyncio.Queue[_Child] = asyncio.Queue()
        self.children: set[_Child] = set()

    async def _spawn(self) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tasktide.worker._child",
            self.app_target,
            self.worker_id,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=os.getcwd(),
        )
        assert proc.stdout is not None
        try:
            kind, _ = FRAME.unpack(await proc.stdout.readexactly(FRAME.size))
        except asyncio.IncompleteReadError:
            code = await proc.wait()
            raise RuntimeError(
                f"a process-pool child could not load {self.app_target} (it ended with {code}); see its error above"
            ) from None
        if kind != b"R":
            raise RuntimeError(f"unexpected frame {kind!r} from a process-pool child")
        child = _Child(proc)
        self.children.add(child)
        return child

    async def open(self) -> None:
        for _ in range(self.concurrency):
            self.idle.put_nowait(await self._spawn())

    async def resize(self, concurrency: int) -> int:
        """Returns the size reached: growth stops at a child that cannot be started (tried twice)."""
        self.concurrency = concurrency
        while len(self.children) < self.concurrency:
            try:
                child = await self._spawn()
            except RuntimeError as first:
                log.warning("starting a process-pool child failed (%s); trying once more", first)
                try:
                    child = await self._spawn()
                except RuntimeError as exc:
                    log.warning("the process pool stays at %d: %s", len(self.children), exc)
                    self.concurrency = len(self.children)
                    break
            self.idle.put_nowait(child)
        while len(self.children) > self.concurrency and not self.idle.empty():
            await self._retire(self.idle.get_nowait())
        return self.concurrency

    async def _retire(self, child: _Child) -> None:
        """End an idle child: its stdin closed, it exits (killed if it does not within 5 s)."""
        self.children.discard(child)
        if child.proc.stdin is not None:
            child.proc.stdin.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(child.proc.wait(), 5)
        if child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()

    async def start(self, a: worker_pb2.Assignment, ctx: TaskContext) -> Running:
        child = await self.idle.get()
        killed: list[bool] = []

        async def run() -> task_pb2.Outcome:
            try:
                return await child.run(a, self.progress)
            finally:
                if killed or child.proc.returncode is not None:
                    self.children.discard(child)
                    if len(self.children) < self.concurrency:
                        self.idle.put_nowait(await self._spawn())
                elif len(self.children) > self.concurrency:  # the pool shrank while it ran
                    await self._retire(child)
                else:
                    self.idle.put_nowait(child)

        def interrupt(kind: str) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGUSR1 if kind == "soft" else signal.SIGUSR2)

        def kill() -> None:
            killed.append(True)
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()

        return Running(asyncio.ensure_future(run()), interrupt, kill)

    async def close(self) -> None:
        for child in list(self.children):
            await self._retire(child)
