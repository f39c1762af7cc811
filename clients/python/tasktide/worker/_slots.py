"""Plain-function tasks on the worker's threads, taken one after another without the event loop.

Each of `concurrency` threads takes the next assignment from a queue, runs it and leaves its outcome
for the loop; a run of short tasks needs no loop turn between them, and the loop hears of finished
attempts in batches (one wake-up for all that finished while it was busy).

`resize` changes how many threads may take assignments at a time (a Resize from the registry): a
thread holds a permit while it waits for an assignment and runs it, and takes a new permit for the
next. Growing starts threads; shrinking leaves the extra threads waiting for a permit once their
attempt ends, and wakes those idle in the queue (a RECHECK entry) so that they give theirs up.

Limits and cancellation reach a running attempt from the loop. A soft time limit raises
SoftTimeLimitExceeded in its thread. A cancel sets `cancelled` (the task may check it); after the
grace period, or at the hard time limit, the attempt is stopped: CancelRequested is raised in its
thread and its outcome is reported at once. Threads cannot be killed: a stopped attempt's thread
finishes what it is doing, and what it returns then is dropped. Use the process pool where a hard
stop must free the CPU.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable

from tasktide._app import App
from tasktide._hooks import Hooks
from tasktide.v1 import task_pb2, worker_pb2
from tasktide.worker._context import CancelRequested, SoftTimeLimitExceeded, TaskContext
from tasktide.worker._execute import (
    FAILURE,
    ProgressSink,
    hard_stopped,
    interrupted,
    make_context,
    not_started,
    run_sync,
    stopped,
)

log = logging.getLogger("tasktide.worker")

# The loop is told of an attempt that ended: (assignment, outcome, seconds it ran).
Finished = Callable[[worker_pb2.Assignment, task_pb2.Outcome, float], None]
RECHECK = worker_pb2.Assignment()  # in the queue: a thread gives up its permit and takes one again


def _raise_in_thread(thread_id: int, exc: type[BaseException]) -> None:
    if thread_id:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


class _Attempt:
    __slots__ = ("a", "ctx", "started", "seconds", "timers", "done", "stopped")

    def __init__(self, a: worker_pb2.Assignment, ctx: TaskContext) -> None:
        self.a = a
        self.ctx = ctx
        self.started = time.monotonic()
        self.seconds = 0.0
        self.timers: list[asyncio.TimerHandle] = []
        self.done = False  # the thread has left the task (set under the lock)
        self.stopped = False  # stopped from the loop; its outcome has been reported


class ThreadSlots:
    def __init__(
        self,
        app: App,
        concurrency: int,
        worker_id: str,
        hooks: Hooks,
        progress: ProgressSink,
        finished: Finished,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.hooks = hooks
        self.progress = progress
        self.finished = finished
        self.loop = loop
        self.busy = 0  # submitted and not yet reported (the loop's count)
        self._queue: queue.SimpleQueue[worker_pb2.Assignment | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the sets, `_running`, `_done`, attempts' flags, permits
        self._permits = threading.Condition(self._lock)
        self._allowed = concurrency  # threads that may hold a permit at a time
        self._holding = 0
        self._closing = False
        self._waiting: set[str] = set()  # queued, not started
        self._cancelled: set[str] = set()  # cancelled while waiting: never runs
        self._running: dict[str, _Attempt] = {}
        self._done: list[tuple[_Attempt, task_pb2.Outcome]] = []
        self._wake_pending = False
        self._threads: list[threading.Thread] = []
        self._start_threads(concurrency)

    def _start_threads(self, total: int) -> None:
        while len(self._threads) < total:
            t = threading.Thread(target=self._serve, name=f"tasktide-task-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    # -- the loop's side

    def submit(self, a: worker_pb2.Assignment) -> None:
        with self._lock:
            self._waiting.add(a.task.id)
        self.busy += 1
        self._queue.put(a)

    def resize(self, concurrency: int) -> None:
        """Let `concurrency` threads take assignments at a time from now on (attempts running
        beyond that finish first)."""
        with self._permits:
            shrink = max(0, self._allowed - concurrency)
            self._allowed = concurrency
            self._permits.notify_all()
        self._start_threads(concurrency)
        for _ in range(shrink):  # idle threads hold permits in the queue's get: wake them
            self._queue.put(RECHECK)

    def take_waiting(self) -> list[worker_pb2.Assignment]:
        """Assignments not started yet, taken back (a drain releases their leases)."""
        taken: list[worker_pb2.Assignment] = []
        while True:
            try:
                a = self._queue.get_nowait()
            except queue.Empty:
                return taken
            if a is None:
                self._queue.put(None)
                return taken
            if a is RECHECK:
                continue
            with self._lock:
                self._waiting.discard(a.task.id)
                self._cancelled.discard(a.task.id)
            self.busy -= 1
            taken.append(a)

    def cancel(self, task_id: str, grace: float) -> bool:
        """Signal the attempt of `task_id` (or keep it from starting); False if it is not here."""
        with self._lock:
            att = self._running.get(task_id)
            if att is None:
                if task_id in self._waiting:
                    self._cancelled.add(task_id)
                    return True
                return False
            att.ctx.cancelled = True

        def hard_stop() -> None:
            if not att.done and not att.stopped:
                log.warning("task %s did not stop within %.1f s of its cancel signal; stopping it", task_id, grace)
                self._stop(att, time_limit=False)

        self.loop.call_later(grace, hard_stop)
        return True

    def close(self) -> None:
        with self._permits:
            self._closing = True
            self._permits.notify_all()
        for _ in self._threads:
            self._queue.put(None)

    def _collect(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._wake_pending = False
        for att, out in done:
            for timer in att.timers:
                timer.cancel()
            if att.stopped:
                continue  # reported when it was stopped
            self.busy -= 1
            self.finished(att.a, out, att.seconds)

    def _arm(self, att: _Attempt) -> None:
        """Time limits of an attempt that has started, counted from its start."""
        if att.done:
            return
        spec = att.a.task.spec
        elapsed = time.monotonic() - att.started
        if spec.soft_time_limit:
            att.timers.append(self.loop.call_later(max(0.0, spec.soft_time_limit - elapsed), self._interrupt, att))
        if spec.time_limit:
            att.timers.append(
                self.loop.call_later(max(0.0, spec.time_limit - elapsed), self._stop, att, True)
            )  # at the hard time limit

    def _interrupt(self, att: _Attempt) -> None:
        with self._lock:
            if not att.done:
                _raise_in_thread(att.ctx.thread_id, SoftTimeLimitExceeded)

    def _stop(self, att: _Attempt, time_limit: bool) -> None:
        with self._lock:
            if att.done or att.stopped:
                return
            att.stopped = True
            _raise_in_thread(att.ctx.thread_id, CancelRequested)
        for timer in att.timers:
            timer.cancel()
        self.busy -= 1
        self.finished(att.a, hard_stopped(att.a, self.worker_id, time_limit), time.monotonic() - att.started)

    # -- the threads' side

    def _serve(self) -> None:
        while True:
            with self._permits:
                while self._holding >= self._allowed and not self._closing:
                    self._permits.wait()
                if self._closing and self._holding >= self._allowed:
                    return
                self._holding += 1
            try:
                if not self._serve_one():
                    return
            finally:
                with self._permits:
                    self._holding -= 1
                    self._permits.notify()

    def _serve_one(self) -> bool:
        """Take the next assignment and run it; False once the slots close (or the loop did)."""
        a = self._queue.get()
        if a is None:
            return False
        if a is RECHECK:
            return True
        att, out = self._attempt(a)
        with self._lock:
            self._done.append((att, out))
            if self._wake_pending:
                return True
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._collect)
        except RuntimeError:  # the loop has closed: the worker is gone
            return False
        return True

    def _attempt(self, a: worker_pb2.Assignment) -> tuple[_Attempt, task_pb2.Outcome]:
        att = _Attempt(a, make_context(a, self.progress))
        task_id = a.task.id
        with self._lock:
            self._waiting.discard(task_id)
            if task_id in self._cancelled:
                self._cancelled.discard(task_id)
                att.done = True
                return att, not_started(a, self.worker_id)
            self._running[task_id] = att
        spec = a.task.spec
        if spec.soft_time_limit or spec.time_limit:
            self.loop.call_soon_threadsafe(self._arm, att)
        try:
            # A fresh context per attempt: the hooks' trace and current_task() end with it.
            out = contextvars.Context().run(self._run, a, att.ctx)
        except (SoftTimeLimitExceeded, CancelRequested) as exc:  # raised as the task was returning
            out = interrupted(a, self.worker_id, soft_limit=isinstance(exc, SoftTimeLimitExceeded))
        except BaseException as exc:  # noqa: BLE001 - outside the task's own handling (a hook, SystemExit)
            log.exception("task %s failed outside its code", task_id)
            out = stopped(a, self.worker_id, FAILURE, type(exc).__name__, str(exc))
        with self._lock:
            att.done = True
            self._running.pop(task_id, None)
        att.seconds = time.monotonic() - att.started
        return att, out

    def _run(self, a: worker_pb2.Assignment, ctx: TaskContext) -> task_pb2.Outcome:
        with self.hooks.process(a, self.worker_id) as report:
            out = run_sync(self.app, a, ctx, self.worker_id)
            report(out)
        return out
