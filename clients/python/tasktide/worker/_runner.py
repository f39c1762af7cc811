"""Supervising attempts on the event loop or in child processes: time limits (soft, then hard) and
cancellation (cooperative, then hard). Plain functions on the thread pool are supervised by _slots.py."""

from __future__ import annotations

import asyncio
import logging

from tasktide._app import App
from tasktide._codec import error_from_exception
from tasktide.v1 import task_pb2, worker_pb2
from tasktide.worker._context import TaskContext
from tasktide.worker._execute import FAILURE, ProgressSink, hard_stopped, make_context, stopped
from tasktide.worker._pools import AsyncioBackend, ProcessBackend, Running

log = logging.getLogger("tasktide.worker")


class TaskRunner:
    def __init__(self, app: App, backend: ProcessBackend | None, worker_id: str, progress: ProgressSink) -> None:
        self.app = app
        self.backend = backend
        self.asyncio = AsyncioBackend(app, worker_id)
        self.worker_id = worker_id
        self.progress = progress
        self.active: dict[str, tuple[Running, TaskContext, worker_pb2.Assignment]] = {}

    async def run(self, a: worker_pb2.Assignment) -> task_pb2.Outcome:
        ctx = make_context(a, self.progress)
        t = self.app.lookup(a.task.spec.name)
        backend = self.backend if self.backend is not None and (t is None or not t.is_async) else self.asyncio
        running = await backend.start(a, ctx)
        self.active[a.task.id] = (running, ctx, a)
        try:
            return await self._supervise(a, running)
        finally:
            self.active.pop(a.task.id, None)

    async def _supervise(self, a: worker_pb2.Assignment, running: Running) -> task_pb2.Outcome:
        spec = a.task.spec
        loop = asyncio.get_running_loop()
        timers = []
        if spec.soft_time_limit:
            timers.append(loop.call_later(spec.soft_time_limit, running.interrupt, "soft"))
        if spec.time_limit:
            timers.append(
                loop.call_later(spec.time_limit, lambda: running.stop(hard_stopped(a, self.worker_id, time_limit=True)))
            )
        try:
            return await running.outcome
        except Exception as exc:  # noqa: BLE001 - the pool lost the attempt (a child died)
            out = stopped(a, self.worker_id, FAILURE, "", "")
            out.error.CopyFrom(error_from_exception(exc))
            return out
        finally:
            for t in timers:
                t.cancel()

    def cancel(self, task_id: str, grace: float) -> bool:
        """Signal a running task to stop; stop it hard after `grace` seconds. False if not running."""
        entry = self.active.get(task_id)
        if entry is None:
            return False
        running, ctx, a = entry
        ctx.cancelled = True
        running.interrupt("cancel")

        def hard_stop() -> None:
            current = self.active.get(task_id)
            if current is not None and current[0] is running:
                log.warning("task %s did not stop within %.1f s of its cancel signal; stopping it", task_id, grace)
                running.stop(hard_stopped(a, self.worker_id, time_limit=False))

        asyncio.get_running_loop().call_later(grace, hard_stop)
        return True
