"""AsyncClient: the asyncio flavour of Client, with the same methods, awaited. Requests and
responses are built and shaped in _base.py, as for Client; Client's docstrings say more."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar, Unpack

import grpc

from tasktide._async_following import AsyncFollower
from tasktide._base import BaseClient, Call, ListFilters, StateLike
from tasktide._channels import aio_channel
from tasktide._errors import translate, translated
from tasktide._exceptions import NotFound, TaskTimeout
from tasktide._explain import DeadLetter, Explanation
from tasktide._handle import AsyncTaskHandle
from tasktide._hooks import Hooks
from tasktide._results import unwrap
from tasktide._schedules import AsyncScheduleMethods
from tasktide._settings import ClientSettings
from tasktide._spec import SubmitOptions, build_spec
from tasktide._states import TaskState
from tasktide._transports import async_submitter
from tasktide._watching import Resumable
from tasktide.v1 import results_pb2, results_pb2_grpc, scheduler_pb2_grpc, task_pb2, worker_pb2, worker_pb2_grpc

T = TypeVar("T")


class AsyncClient(BaseClient, AsyncScheduleMethods):  # schedule methods: _schedules.py
    """asyncio client with the same methods as Client, awaited. Its channels belong to the event
    loop it is first used on; close it (`async with`, or `await client.close()`) before that loop
    ends, which waits for unconfirmed submissions and ends its streams (submissions, results
    awaited) with the service. Left open, its streams end their calls when the loop cancels their
    tasks as it ends (as `asyncio.run` does), which holds the loop's end a moment (a quarter of a
    second); a submission or wait on the same loop after that opens new streams.

    Args:
        address: the platform's address (default: TASKTIDE_ADDRESS, else 127.0.0.1:50051).
        settings: all settings at once (default: read from the TASKTIDE_* variables).
        hooks: a plugin, such as tracing (tasktide.contrib.opentelemetry.TracingHooks).
        transport: as for Client: tasks share one SubmitStream, confirmed each (the default; with
            "pipelined" too), or "unary" (a Submit call each); or straight to Redis with
            TASKTIDE_SUBMIT_REDIS_URL.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        settings: ClientSettings | None = None,
        hooks: Hooks | None = None,
        transport: str | None = None,
    ) -> None:
        super().__init__(address, settings, hooks)
        chain = list(self._hooks.aio_client_interceptors()) or None
        addresses = self._addresses()
        self._channels = {a: aio_channel(self.settings, a, chain or ()) for a in set(addresses.values())}
        scheduler = scheduler_pb2_grpc.SchedulerStub(self._channels[addresses["scheduler"]])
        self._stubs: dict[str, Any] = {
            "scheduler": scheduler,
            "results": results_pb2_grpc.ResultsStub(self._channels[addresses["results"]]),
            "registry": worker_pb2_grpc.RegistryStub(self._channels[addresses["registry"]]),
        }
        # The transport, chosen once: _transports.py
        self._submitter = async_submitter(self.settings, scheduler, self._hooks, transport)
        # Waits for results share one Follow stream: _async_following.py
        self._follower = AsyncFollower(self._stubs["results"])

    async def _run(self, call: Call[T]) -> T:
        with translated(self._address(call.service)):
            resp = await getattr(self._stubs[call.service], call.method)(call.request, timeout=call.timeout)
        return call.shape(resp)

    @property
    def scheduler_channel(self) -> grpc.aio.Channel:
        """The channel to the scheduler (which also hosts workflows)."""
        return self._channels[self.settings.scheduler()]

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every task submitted so far is confirmed (see Client.flush).

        Args:
            timeout: seconds to wait at most (None: no limit).
        """
        await self._submitter.flush(timeout)

    async def close(self) -> None:
        """Close the connections, after waiting for unconfirmed submissions."""
        try:
            await self._submitter.close()
        finally:
            await self._follower.close()
            for ch in self._channels.values():
                await ch.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> AsyncTaskHandle:
        """Submit the task `name` with these arguments.

        Args:
            name: the task's registered name ("shop.add").
            args, kwargs: its arguments, JSON-compatible.
            **options: queue, priority, countdown, eta, expires, idempotency_key... (SubmitOptions).
        """
        return await self.submit_spec(build_spec(name, args, kwargs, **options))

    async def submit_spec(self, spec: task_pb2.TaskSpec) -> AsyncTaskHandle:
        """Submit a task given as a TaskSpec, over the client's transport.

        Args:
            spec: the task.
        """
        return AsyncTaskHandle(await self._submitter.submit(spec), self, spec.name)

    async def submit_many(self, specs: Sequence[task_pb2.TaskSpec]) -> list[AsyncTaskHandle]:
        """Submit tasks in one batch; their handles in the same order.

        Args:
            specs: the tasks.
        """
        ids = await self._submitter.submit_batch(specs)
        return [AsyncTaskHandle(task_id, self, s.name) for task_id, s in zip(ids, specs, strict=True)]

    async def get_task(self, task_id: str) -> task_pb2.Task:
        """The scheduler's record of a task; raises NotFound when it does not know it.

        Args:
            task_id: the task's id.
        """
        return await self._run(self._get_task(task_id))

    async def cancel(self, task_id: str) -> TaskState:
        """Cancel a task (see Client.cancel).

        Args:
            task_id: the task's id.
        """
        return await self._run(self._cancel(task_id))

    async def fetch(self, task_ids: Sequence[str]) -> list[task_pb2.TaskResult]:
        """The results service's record of each task, in order.

        Args:
            task_ids: the tasks' ids.
        """
        return await self._run(self._fetch(task_ids))

    async def list_tasks(
        self,
        state: StateLike | Sequence[StateLike] = (),
        *,
        name: str = "",
        queue: str = "",
        worker_id: str = "",
        error_type: str = "",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
        cursor: str = "",
        counts: bool = False,
    ) -> results_pb2.ListTasksResponse:
        """Tasks that changed within the server's index retention, latest first; arguments as
        Client.list_tasks."""
        return await self._run(
            self._list_tasks(
                ListFilters(state, name, queue, worker_id, error_type, since, until, limit, cursor, counts)
            )
        )

    async def explain(self, task_id: str) -> Explanation:
        """Why the task is not running (yet).

        Args:
            task_id: the task's id.
        """
        return await self._run(self._explain(task_id))

    async def pause_queue(self, queue: str, paused: bool = True) -> None:
        """Stop handing out the tasks of a queue; `paused=False` resumes it.

        Args:
            queue: the queue's name.
            paused: pause (True) or resume (False).
        """
        await self._run(self._pause_queue(queue, paused))

    async def resume_queue(self, queue: str) -> None:
        """Resume a paused queue.

        Args:
            queue: the queue's name.
        """
        await self.pause_queue(queue, paused=False)

    async def queue_stats(self) -> list[worker_pb2.QueueStat]:
        """Each queue's counts and whether it is paused."""
        return await self._run(self._queue_stats())

    async def workers(self) -> list[worker_pb2.WorkerInfo]:
        """The workers connected to the platform."""
        return await self._run(self._workers())

    async def drain_worker(self, worker_id: str) -> int:
        """Stop a worker gracefully (as `Client.drain_worker`); returns how many of its sessions
        were asked.

        Args:
            worker_id: the worker's id, as `workers()` gives it.
        """
        return await self._run(self._drain_worker(worker_id))

    async def resize_worker(self, worker_id: str, concurrency: int) -> int:
        """Grow or shrink a worker's pool (as `Client.resize_worker`); returns how many of its
        sessions were asked.

        Args:
            worker_id: the worker's id, as `workers()` gives it.
            concurrency: tasks at a time, 1..1024.
        """
        return await self._run(self._resize_worker(worker_id, concurrency))

    async def dead_letters(self, queue: str = "", limit: int = 100) -> list[DeadLetter]:
        """Tasks set aside after killing their worker too often.

        Args:
            queue: only this queue's ("": every queue's).
            limit: at most this many.
        """
        return await self._run(self._dead_letters(queue, limit))

    async def requeue_dead(self, queue: str = "default", task_ids: Sequence[str] = ()) -> int:
        """Put dead tasks back in their queue as first attempts; returns how many.

        Args:
            queue: the queue whose dead tasks to requeue.
            task_ids: only these (default: all of the queue's).
        """
        return await self._run(self._requeue_dead(queue, task_ids))

    async def status(self, task_id: str) -> TaskState:
        """The task's state; UNKNOWN for an id the platform does not know.

        Args:
            task_id: the task's id.
        """
        state = self._found_state((await self.fetch([task_id]))[0])
        if state is not None:
            return state
        try:
            return TaskState.from_proto((await self.get_task(task_id)).state)
        except NotFound:
            return TaskState.UNKNOWN

    async def wait(self, task_id: str, timeout: float | None = None) -> task_pb2.TaskResult:
        """The task's final result record; raises TaskTimeout after `timeout`.

        Args:
            task_id: the task's id.
            timeout: seconds to wait at most (None: no limit).
        """
        if self._no_wait(timeout):
            return self._final_or_timeout((await self.fetch([task_id]))[0], task_id, timeout)
        deadline = self._deadline(timeout)
        try:
            followed = await self._follower.wait(task_id, None if deadline is None else deadline - time.monotonic())
        except TimeoutError:
            raise TaskTimeout(task_id, timeout) from None
        if followed is not None:
            return followed
        while True:  # the Follow stream cannot serve it: Wait calls
            res = await self._run(self._wait_slice(task_id, deadline, timeout))
            if self._is_final(res):
                return res

    async def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's return value; raises TaskFailed with the remote error, TaskTimeout on timeout.

        Args:
            task_id: the task's id.
            timeout: seconds to wait at most (None: no limit).
        """
        return unwrap(await self.wait(task_id, timeout))

    async def watch(
        self,
        task_ids: Sequence[str],
        *,
        until_final: bool = True,
        cursors: dict[str, str] | None = None,
        final_only: bool = False,
    ) -> AsyncIterator[task_pb2.TaskEvent]:
        """The events of these tasks as they happen (see Client.watch).

        Args:
            task_ids: the tasks to watch.
            until_final: end once every task is final.
            cursors: per task, the sequence to resume after.
            final_only: only the final events.
        """
        watch = Resumable(task_ids, until_final, cursors, final_only)
        while not watch.done():
            try:
                async for batch in self._stubs["results"].WatchBatches(watch.request()):
                    for ev in batch.events:
                        if watch.fresh(ev):
                            yield ev
                if not watch.resume_after_end():
                    return
            except grpc.RpcError as exc:  # another replica takes the watch over from its cursors
                pause = watch.resume_after(exc)
                if pause is None:
                    raise translate(exc, self.settings.results()) from None
                await asyncio.sleep(pause)
