"""Client: submits tasks by name and reads their results, blocking (AsyncClient: _async_client.py).
Requests and responses are built and shaped in _base.py; this module does the calls."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, Unpack

import grpc

from tasktide._base import BaseClient, Call, ListFilters, StateLike
from tasktide._channels import blocking_channel
from tasktide._errors import translate, translated
from tasktide._exceptions import NotFound, TaskTimeout
from tasktide._explain import DeadLetter, Explanation
from tasktide._following import Follower
from tasktide._handle import TaskHandle
from tasktide._hooks import Hooks
from tasktide._results import unwrap
from tasktide._schedules import ScheduleMethods
from tasktide._settings import ClientSettings
from tasktide._spec import SubmitOptions, build_spec
from tasktide._states import TaskState
from tasktide._transports import blocking_submitter
from tasktide._watching import Resumable
from tasktide.v1 import results_pb2, results_pb2_grpc, scheduler_pb2_grpc, task_pb2, worker_pb2, worker_pb2_grpc

T = TypeVar("T")


class Client(BaseClient, ScheduleMethods):  # schedule methods: _schedules.py
    """Blocking client. Thread-safe; keep one per process.

    Args:
        address: the platform's address (default: TASKTIDE_ADDRESS, else 127.0.0.1:50051).
        settings: all settings at once (default: read from the TASKTIDE_* variables).
        hooks: a plugin, such as tracing (tasktide.contrib.opentelemetry.TracingHooks).
        transport: how tasks sent one at a time travel: "stream", "pipelined" or "unary"
            (default: from the settings). See ClientSettings.
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
        addresses = self._addresses()
        self._channels = {a: blocking_channel(self.settings, a) for a in set(addresses.values())}
        wrapped = {a: self._hooks.wrap_channel(ch) for a, ch in self._channels.items()}
        scheduler = scheduler_pb2_grpc.SchedulerStub(wrapped[addresses["scheduler"]])
        self._stubs: dict[str, Any] = {
            "scheduler": scheduler,
            "results": results_pb2_grpc.ResultsStub(wrapped[addresses["results"]]),
            "registry": worker_pb2_grpc.RegistryStub(wrapped[addresses["registry"]]),
        }
        # Waits for results share one Follow stream: _following.py
        self._follower = Follower(self._stubs["results"])
        # The transport, chosen once: _transports.py
        try:
            self._submitter = blocking_submitter(self.settings, scheduler, self._hooks, transport)
        except BaseException:
            for ch in self._channels.values():
                ch.close()
            raise

    def _run(self, call: Call[T]) -> T:
        with translated(self._address(call.service)):
            resp = getattr(self._stubs[call.service], call.method)(call.request, timeout=call.timeout)
        return call.shape(resp)

    @property
    def scheduler_channel(self) -> grpc.Channel:
        """The channel to the scheduler (which also hosts workflows)."""
        return self._channels[self.settings.scheduler()]

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every task submitted so far is confirmed by the platform; raise the first
        refusal since the last flush. Only pipelined submission leaves any unconfirmed.

        Args:
            timeout: seconds to wait at most (None: no limit); a ServiceError beyond it.
        """
        self._submitter.flush(timeout)

    def close(self) -> None:
        """Close the connections, after waiting for unconfirmed submissions (see flush)."""
        try:
            self._submitter.close()
        finally:
            self._follower.close()
            for ch in self._channels.values():
                ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> TaskHandle:
        """Submit the task `name` (defined in any language) with these arguments.

        Args:
            name: the task's registered name ("shop.add").
            args, kwargs: its arguments, JSON-compatible.
            **options: queue, priority, countdown, eta, expires, idempotency_key... (SubmitOptions).
        """
        return self.submit_spec(build_spec(name, args, kwargs, **options))

    def submit_spec(self, spec: task_pb2.TaskSpec) -> TaskHandle:
        """Submit a task given as a TaskSpec, over the client's transport.

        Args:
            spec: the task (build one with Task.spec()).
        """
        sent = self._submitter.submit(spec)
        if isinstance(sent, str):
            return TaskHandle(sent, self, spec.name)
        return TaskHandle("", self, spec.name, pending=sent)

    def submit_many(self, specs: Sequence[task_pb2.TaskSpec]) -> list[TaskHandle]:
        """Submit tasks in one batch (all accepted or none); their handles in the same order.

        Args:
            specs: the tasks.
        """
        ids = self._submitter.submit_batch(specs)
        return [TaskHandle(task_id, self, s.name) for task_id, s in zip(ids, specs, strict=True)]

    def get_task(self, task_id: str) -> task_pb2.Task:
        """The scheduler's record of a task; raises NotFound when it does not know it.

        Args:
            task_id: the task's id.
        """
        return self._run(self._get_task(task_id))

    def cancel(self, task_id: str) -> TaskState:
        """Cancel a task: at once when delayed or queued; a running task is signalled, then stopped.

        Args:
            task_id: the task's id.
        """
        return self._run(self._cancel(task_id))

    def fetch(self, task_ids: Sequence[str]) -> list[task_pb2.TaskResult]:
        """The results service's record of each task, in order (`found` is false for unknown ids).

        Args:
            task_ids: the tasks' ids.
        """
        return self._run(self._fetch(task_ids))

    def list_tasks(
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
        """Tasks that changed within the server's index retention, the latest changed first: one
        page, with `next_cursor` for the next (empty at the end) and, with `counts`, the number of
        tasks by state and by task name over the time range.

        Args:
            state: one state or several (TaskState, or its name such as "FAILED"); none: any.
            name: only tasks of this name.
            queue: only tasks of this queue.
            worker_id: only tasks whose latest event came from this worker.
            error_type: only tasks whose error has this type (for example "ValueError", "mymodule.MyError").
            since: only tasks that changed at or after this time.
            until: only tasks that changed before this time.
            limit: tasks per page (at most 1000).
            cursor: the `next_cursor` of the previous page.
            counts: also count the tasks by state and by name.
        """
        return self._run(
            self._list_tasks(
                ListFilters(state, name, queue, worker_id, error_type, since, until, limit, cursor, counts)
            )
        )

    def explain(self, task_id: str) -> Explanation:
        """Why the task is not running (yet): ETA, backoff, rate limit, no worker, paused queue...

        Args:
            task_id: the task's id.
        """
        return self._run(self._explain(task_id))

    def pause_queue(self, queue: str, paused: bool = True) -> None:
        """Stop handing out the tasks of a queue (they wait); `paused=False` resumes it.

        Args:
            queue: the queue's name.
            paused: pause (True) or resume (False).
        """
        self._run(self._pause_queue(queue, paused))

    def resume_queue(self, queue: str) -> None:
        """Resume a paused queue.

        Args:
            queue: the queue's name.
        """
        self.pause_queue(queue, paused=False)

    def queue_stats(self) -> list[worker_pb2.QueueStat]:
        """Each queue's counts (ready, running, dead...) and whether it is paused."""
        return self._run(self._queue_stats())

    def workers(self) -> list[worker_pb2.WorkerInfo]:
        """The workers connected to the platform."""
        return self._run(self._workers())

    def drain_worker(self, worker_id: str) -> int:
        """Stop a worker gracefully: it takes nothing new, gives back the tasks it has not started,
        finishes those running and ends. Returns how many of its sessions were asked; raises
        NotFound when no worker of that id is connected.

        Args:
            worker_id: the worker's id, as `workers()` gives it.
        """
        return self._run(self._drain_worker(worker_id))

    def resize_worker(self, worker_id: str, concurrency: int) -> int:
        """Grow or shrink a worker's pool: from now on it runs at most `concurrency` tasks at a
        time (tasks running beyond that finish first). Returns how many of its sessions were asked;
        raises NotFound when no worker of that id is connected, ServiceError with code
        FAILED_PRECONDITION when it cannot be resized (its Hello did not say it can),
        InvalidArgument for a concurrency outside 1..1024.

        Args:
            worker_id: the worker's id, as `workers()` gives it.
            concurrency: tasks at a time.
        """
        return self._run(self._resize_worker(worker_id, concurrency))

    def dead_letters(self, queue: str = "", limit: int = 100) -> list[DeadLetter]:
        """Tasks that killed their worker too often and were set aside.

        Args:
            queue: only this queue's ("": every queue's).
            limit: at most this many.
        """
        return self._run(self._dead_letters(queue, limit))

    def requeue_dead(self, queue: str = "default", task_ids: Sequence[str] = ()) -> int:
        """Put dead tasks back in their queue as first attempts; returns how many.

        Args:
            queue: the queue whose dead tasks to requeue.
            task_ids: only these (default: all of the queue's).
        """
        return self._run(self._requeue_dead(queue, task_ids))

    def status(self, task_id: str) -> TaskState:
        """The task's state; UNKNOWN for an id the platform does not know.

        Args:
            task_id: the task's id.
        """
        state = self._found_state(self.fetch([task_id])[0])
        if state is not None:
            return state
        try:  # not dispatched yet: its queue knows it
            return TaskState.from_proto(self.get_task(task_id).state)
        except NotFound:
            return TaskState.UNKNOWN

    def wait(self, task_id: str, timeout: float | None = None) -> task_pb2.TaskResult:
        """The task's final result record, once it has one; raises TaskTimeout after `timeout`.

        Args:
            task_id: the task's id.
            timeout: seconds to wait at most (None: no limit).
        """
        if self._no_wait(timeout):
            return self._final_or_timeout(self.fetch([task_id])[0], task_id, timeout)
        deadline = self._deadline(timeout)
        try:
            followed = self._follower.wait(task_id, None if deadline is None else deadline - time.monotonic())
        except TimeoutError:
            raise TaskTimeout(task_id, timeout) from None
        if followed is not None:
            return followed
        while True:  # the Follow stream cannot serve it: Wait calls
            res = self._run(self._wait_slice(task_id, deadline, timeout))
            if self._is_final(res):
                return res

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """The task's return value; raises TaskFailed with the remote error, TaskTimeout on timeout.

        Args:
            task_id: the task's id.
            timeout: seconds to wait at most (None: no limit).
        """
        return unwrap(self.wait(task_id, timeout))

    def watch(
        self,
        task_ids: Sequence[str],
        *,
        until_final: bool = True,
        cursors: dict[str, str] | None = None,
        final_only: bool = False,
    ) -> Iterator[task_pb2.TaskEvent]:
        """The events of these tasks as they happen, those already recorded first. A stream broken
        by the loss of a results replica is opened again from where it was (_watching.py).

        Args:
            task_ids: the tasks to watch.
            until_final: end once every task is final.
            cursors: per task, the sequence to resume after (from an event's `seq`).
            final_only: only the final events.
        """
        watch = Resumable(task_ids, until_final, cursors, final_only)
        while not watch.done():
            try:
                for batch in self._stubs["results"].WatchBatches(watch.request()):
                    yield from (ev for ev in batch.events if watch.fresh(ev))
                if not watch.resume_after_end():
                    return
            except grpc.RpcError as exc:  # another replica takes the watch over from its cursors
                pause = watch.resume_after(exc)
                if pause is None:
                    raise translate(exc, self.settings.results()) from None
                time.sleep(pause)
