"""The worker runtime: one Session stream to the registry per process.

The worker grants credits; the registry sends at most that many assignments. Outcomes are flushed in
small batches, each returning its credit. Heartbeats extend every lease the worker holds. A Resize
(ResizeWorker) grows or shrinks the pools and the credit to match. On drain
(SIGTERM) nothing new is taken, leases of tasks not started are released, running tasks finish and
their outcomes are sent before the stream closes.

A lost session (its registry replica died, the connection broke) is opened again, on whichever
replica the registry's address now leads to. What the worker holds goes on: tasks running or
prefetched keep their leases (a heartbeat on the new session extends them at once), outcomes not
yet written are written there, and those written during the last lease period are sent again in
case the lost replica never recorded them (_in_doubt.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TypeAlias

import grpc

from tasktide._app import App
from tasktide._channels import aio_channel
from tasktide._errors import translate
from tasktide._hooks import Hooks
from tasktide._settings import ClientSettings
from tasktide.v1 import task_pb2, worker_pb2, worker_pb2_grpc
from tasktide.worker._config import WorkerConfig
from tasktide.worker._credit import CreditWindow
from tasktide.worker._execute import not_started
from tasktide.worker._in_doubt import InDoubt
from tasktide.worker._outbox import Outbox
from tasktide.worker._permits import Permits
from tasktide.worker._pools import ProcessBackend
from tasktide.worker._runner import TaskRunner
from tasktide.worker._slots import RECHECK, ThreadSlots

log = logging.getLogger("tasktide.worker")

_SessionCall: TypeAlias = "grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.RegistryMessage]"
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
_RECONNECT_MAX = 5.0


class Worker:
    def __init__(self, app: App, config: WorkerConfig, settings: ClientSettings, hooks: Hooks | None = None) -> None:
        if config.pool not in ("threads", "asyncio", "processes"):
            raise ValueError(f"unknown pool {config.pool!r}: choose threads, asyncio or processes")
        self.app = app
        self.config = config
        self.settings = settings
        self.hooks = hooks or app.hooks
        self.lease_seconds = settings.lease_seconds_hint
        self._stopping = asyncio.Event()
        self._held: dict[str, worker_pb2.LeaseRef] = {}
        self._outbox = Outbox(self._leases)
        self._ready: asyncio.Queue[worker_pb2.Assignment | None] = asyncio.Queue()
        self._running = 0
        self._cancel_pending: set[str] = set()
        self._runner: TaskRunner | None = None
        self._slots: ThreadSlots | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.concurrency = config.concurrency  # as set, then as a Resize changed it
        self._permits = Permits(config.concurrency)  # consumers taking assignments at a time
        self._backend: ProcessBackend | None = None
        self._credit = CreditWindow(config.concurrency, config.prefetch)
        self._in_doubt = InDoubt(self.lease_seconds)
        self._consumers: list[asyncio.Task[None]] = []
        self.completed = 0

    def _send_progress(self, report: worker_pb2.ProgressReport) -> None:
        """Called by task code: on the loop (async tasks, the process pool's frames) or in a thread.
        Only the latest report of an attempt waits to be written (_outbox.py)."""
        self._outbox.progress(report)

    @property
    def outbox_size(self) -> int:
        """Entries waiting to be written on the session (bounded: see _outbox.py)."""
        return len(self._outbox)

    def _leases(self) -> worker_pb2.Heartbeat | None:
        """A heartbeat for every lease held now; None when none is held."""
        return worker_pb2.Heartbeat(leases=list(self._held.values())) if self._held else None

    def request_stop(self) -> None:
        """Begin a graceful drain; safe to call from a signal handler on the loop."""
        self._stopping.set()

    async def run(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._outbox.bind(self._loop)
        backend: ProcessBackend | None = None
        if cfg.pool == "processes":
            backend = ProcessBackend(cfg.app_target, cfg.concurrency, cfg.worker_id, self._send_progress)
            await backend.open()
            self._backend = backend
        else:  # plain functions on threads; `async def` tasks on the loop (TaskRunner)
            self._slots = ThreadSlots(
                self.app, cfg.concurrency, cfg.worker_id, self.hooks, self._send_progress, self._finished, self._loop
            )
        runner = self._runner = TaskRunner(self.app, backend, cfg.worker_id, self._send_progress)
        # The consumers outlive sessions: a task running when its session is lost goes on.
        self._consumers = [asyncio.create_task(self._consume(runner)) for _ in range(cfg.concurrency)]
        delay = 0.2
        try:
            while not self._stopping.is_set():
                try:
                    await self._session()
                    delay = 0.2
                except grpc.aio.AioRpcError as exc:
                    if self._stopping.is_set():
                        break
                    if exc.code() in _REFUSED:  # a token the platform refuses: retrying cannot help
                        raise translate(exc, self.settings.registry()) from None
                    log.warning("session lost (%s: %s); reconnecting", exc.code().name, exc.details())
                    try:
                        await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    except TimeoutError:
                        pass
                    delay = min(delay * 2, _RECONNECT_MAX)
        finally:
            for t in self._consumers:
                t.cancel()
            await asyncio.gather(*self._consumers, return_exceptions=True)
            if backend is not None:
                await backend.close()
            if self._slots is not None:
                self._slots.close()

    async def _session(self) -> None:
        cfg = self.config
        async with aio_channel(self.settings, self.settings.registry()) as channel:
            call = worker_pb2_grpc.RegistryStub(channel).Session()
            hello = worker_pb2.Hello(
                worker_id=cfg.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=list(cfg.queues),
                task_names=sorted(self.app.tasks),
                concurrency=self.concurrency,
                language="python",
                resizable=True,
            )
            await call.write(worker_pb2.WorkerMessage(hello=hello))
            welcome = await call.read()
            if welcome is grpc.aio.EOF or welcome.WhichOneof("kind") != "welcome":
                raise RuntimeError("the registry did not welcome this worker")
            self.lease_seconds = welcome.welcome.lease_seconds or self.lease_seconds
            self._in_doubt.horizon = self.lease_seconds
            await self._resume(call)
            tasks = [
                asyncio.create_task(self._read(call)),
                asyncio.create_task(self._write(call)),
                asyncio.create_task(self._heartbeat()),
            ]
            stop = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([tasks[0], stop], return_when=asyncio.FIRST_COMPLETED)
            try:
                if stop in done:
                    await self._drain(call, tasks)
                else:
                    tasks[0].result()  # raises the stream's error, if any
            finally:
                stop.cancel()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _resume(self, call: _SessionCall) -> None:
        """Open a session's credit, carrying over what a lost session left: the leases still held
        (extended at once, so they do not lapse during the reconnection), and the outcomes it may
        not have recorded. The credit counts the tasks held, and the outcomes still to write, as
        already given."""
        hb = self._leases()
        if hb is not None:
            await call.write(worker_pb2.WorkerMessage(heartbeat=hb))
        again = self._in_doubt.take()
        for i in range(0, len(again), self.config.max_batch):
            batch = worker_pb2.OutcomeBatch(outcomes=again[i : i + self.config.max_batch], credit=0)
            await call.write(worker_pb2.WorkerMessage(outcomes=batch))
        if again:
            log.info("sent %d outcomes again on the new session", len(again))
        credit = self._credit.open(len(self._held) + self._outbox.outcomes)
        await call.write(worker_pb2.WorkerMessage(credit=credit))

    async def _read(self, call: _SessionCall) -> None:
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("kind")
            if kind == "assignments":
                for a in msg.assignments.assignments:
                    t = a.task
                    self._held[t.id] = worker_pb2.LeaseRef(task_id=t.id, queue=t.spec.queue, lease_token=a.lease_token)
                    self._start(a)
            elif kind == "welcome":
                self.lease_seconds = msg.welcome.lease_seconds or self.lease_seconds
            elif kind == "cancel":
                self._cancel(msg.cancel.task_id, msg.cancel.grace_seconds)
            elif kind == "drain":
                self._stopping.set()
            elif kind == "resize":
                await self._resize(msg.resize.concurrency)
            elif kind == "rejected":
                lease = msg.rejected.lease
                held = self._held.get(lease.task_id)
                if held is not None and held.lease_token == lease.lease_token:
                    del self._held[lease.task_id]  # gone: heartbeats cannot bring it back
                if self._in_doubt.was_resent(lease.task_id, lease.lease_token):
                    log.debug("outcome sent again for %s was already recorded", lease.task_id)
                else:
                    log.warning("lease rejected for %s: %s", lease.task_id, msg.rejected.reason)

    async def _resize(self, concurrency: int) -> None:
        """Run at most `concurrency` at a time from now on: the pools and the credit follow, and the
        registry hears the new size (what ListWorkers shows)."""
        if concurrency < 1 or self._stopping.is_set():
            return
        if self._backend is not None:  # as many child processes as could be started
            concurrency = max(1, await self._backend.resize(concurrency))
        shrink = max(0, self.concurrency - concurrency)
        self.concurrency = concurrency
        if self._slots is not None:
            self._slots.resize(concurrency)
        self._permits.resize(concurrency)
        while self._runner is not None and len(self._consumers) < concurrency:
            self._consumers.append(asyncio.create_task(self._consume(self._runner)))
        for _ in range(shrink):  # consumers idle in the queue's get give up their permits
            self._ready.put_nowait(RECHECK)
        grant = self._credit.resize(concurrency)
        if grant:
            self._outbox.put(worker_pb2.WorkerMessage(credit=grant))
        self._outbox.put(worker_pb2.WorkerMessage(concurrency=concurrency))
        log.info("resized to %d at a time", concurrency)

    def _start(self, a: worker_pb2.Assignment) -> None:
        if self._slots is not None:
            t = self.app.lookup(a.task.spec.name)
            if t is None or not t.is_async:
                self._slots.submit(a)
                return
        self._ready.put_nowait(a)

    def _finished(self, a: worker_pb2.Assignment, out: task_pb2.Outcome, seconds: float | None) -> None:
        """An attempt ended (`seconds` it ran; None if it never started): its outcome goes out."""
        if seconds is not None:
            self._credit.observe(seconds)
        self._held.pop(a.task.id, None)
        self._cancel_pending.discard(a.task.id)  # a cancel that came as it finished (thread pool)
        self.completed += 1
        self._outbox.put(out)

    def _busy(self) -> int:
        """Attempts running or waiting for a thread, outcomes not yet reported."""
        return self._running + (self._slots.busy if self._slots is not None else 0)

    async def _consume(self, runner: TaskRunner) -> None:
        while not self._stopping.is_set():
            await self._permits.acquire()
            try:
                if not await self._consume_one(runner):
                    return
            finally:
                self._permits.release()

    async def _consume_one(self, runner: TaskRunner) -> bool:
        """Take the next assignment and run it; False once told to end (None)."""
        a = await self._ready.get()
        if a is None:
            return False
        if a is RECHECK:
            return True
        self._running += 1
        try:
            if a.task.id in self._cancel_pending:
                self._cancel_pending.discard(a.task.id)
                self._finished(a, not_started(a, self.config.worker_id), None)
                return True
            started = time.monotonic()
            with self.hooks.process(a, self.config.worker_id) as report:
                out = await runner.run(a)
                report(out)
        finally:
            self._running -= 1
        self._finished(a, out, time.monotonic() - started)
        return True

    def _cancel(self, task_id: str, grace: float) -> None:
        if self._slots is not None and self._slots.cancel(task_id, grace):
            return
        if self._runner is None or not self._runner.cancel(task_id, grace):
            if task_id in self._held:
                self._cancel_pending.add(task_id)  # prefetched, not started: never runs

    async def _write(self, call: _SessionCall) -> None:
        """The only writer of the stream: batches outcomes, passes other messages through."""
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            if isinstance(item, task_pb2.Outcome):
                batch = [item]
                self._in_doubt.written(batch)  # from here on a lost session sends it again
                if self._busy() or not self._ready.empty():  # more outcomes may join this batch
                    wait = self.config.flush_interval
                    await asyncio.sleep(self._credit.linger() if wait is None else wait)
                others: list[worker_pb2.WorkerMessage] = []
                while not self._outbox.empty() and len(batch) < self.config.max_batch:
                    try:
                        nxt = self._outbox.get_nowait()
                    except asyncio.QueueEmpty:  # only progress or heartbeat places already taken
                        break
                    if nxt is None:
                        self._outbox.put(None)
                        break
                    if isinstance(nxt, task_pb2.Outcome):
                        batch.append(nxt)
                        self._in_doubt.written([nxt])
                    else:
                        others.append(nxt)
                credit = 0 if self._stopping.is_set() else self._credit.returned(len(batch))
                ob = worker_pb2.OutcomeBatch(outcomes=batch, credit=credit)
                await call.write(worker_pb2.WorkerMessage(outcomes=ob))
                for m in others:
                    await call.write(m)
            else:
                await call.write(item)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(max(self.lease_seconds / 3.0, 0.05))
            if self._held:
                self._outbox.heartbeat()  # built when written; one waits at most

    async def _drain(self, call: _SessionCall, tasks: list[asyncio.Task[None]]) -> None:
        not_started: list[worker_pb2.LeaseRef] = []
        while not self._ready.empty():
            a = self._ready.get_nowait()
            ref = self._held.pop(a.task.id, None) if a is not None and a is not RECHECK else None
            if ref is not None:
                not_started.append(ref)
        if self._slots is not None:
            for a in self._slots.take_waiting():
                ref = self._held.pop(a.task.id, None)
                if ref is not None:
                    not_started.append(ref)
        self._permits.resize(len(self._consumers))  # each consumer takes its None
        for _ in self._consumers:
            self._ready.put_nowait(None)
        if not_started:
            self._outbox.put(worker_pb2.WorkerMessage(release=worker_pb2.Release(leases=not_started)))
        log.info("draining: %d released, %d running", len(not_started), self._busy())
        await asyncio.gather(*self._consumers, return_exceptions=True)
        while self._busy():
            await asyncio.sleep(0.01)
        self._outbox.put(None)
        await tasks[1]
        await call.done_writing()
        try:
            await asyncio.wait_for(tasks[0], timeout=2.0)
        except (TimeoutError, grpc.aio.AioRpcError):
            pass
