"""What Client and AsyncClient share, with no I/O: settings, requests built as `Call`s, responses
shaped into results. Client (_client.py) runs a Call blocking, AsyncClient (_async_client.py)
awaits it; each has one `_run`, where gRPC errors become tasktide's (`translated`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from tasktide._exceptions import TaskTimeout
from tasktide._explain import DeadLetter, Explanation
from tasktide._hooks import Hooks, default_hooks
from tasktide._settings import ClientSettings
from tasktide._states import FINAL_PROTO_STATES, TaskState
from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2

T = TypeVar("T")
Service = Literal["scheduler", "results", "registry"]
SERVICES: tuple[Service, ...] = ("scheduler", "results", "registry")

# The server holds one Wait call at most this long; the client loops for longer timeouts.
WAIT_SLICE = 30.0


def _same(resp: T) -> T:
    return resp


def _none(resp: object) -> None:
    return None


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _dead_letters(resp: worker_pb2.ListDeadResponse) -> list[DeadLetter]:
    return [
        DeadLetter(d.task.id, d.task.spec.name, d.task.spec.queue, d.task.attempt, _utc(d.dead_ms)) for d in resp.tasks
    ]


StateLike = TaskState | str | int


def _state_value(s: StateLike) -> int:
    if isinstance(s, TaskState):
        return s.to_proto()
    if isinstance(s, str):
        try:
            return TaskState[s.upper()].to_proto()
        except KeyError:
            raise ValueError(f"unknown task state {s!r}") from None
    return int(s)


@dataclass(frozen=True, slots=True)
class ListFilters:
    """What `list_tasks` asks for (see Client.list_tasks)."""

    states: StateLike | Sequence[StateLike] = ()
    name: str = ""
    queue: str = ""
    worker_id: str = ""
    error_type: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = 100
    cursor: str = ""
    counts: bool = False

    def request(self) -> results_pb2.ListTasksRequest:
        states: Sequence[StateLike] = [self.states] if isinstance(self.states, TaskState | str | int) else self.states
        return results_pb2.ListTasksRequest(
            states=[task_pb2.TaskState.ValueType(_state_value(s)) for s in states],
            name=self.name,
            queue=self.queue,
            worker_id=self.worker_id,
            error_type=self.error_type,
            since_ms=int(self.since.timestamp() * 1000) if self.since else 0,
            until_ms=int(self.until.timestamp() * 1000) if self.until else 0,
            limit=self.limit,
            cursor=self.cursor,
            counts=self.counts,
        )


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One unary call: the service and stub method, the request, and how the response becomes the
    caller's result. `timeout`: the call's deadline in seconds, if any."""

    service: Service
    method: str
    request: Any
    shape: Callable[[Any], T]
    timeout: float | None = None


class BaseClient:
    """The part of Client and AsyncClient that does no I/O."""

    def __init__(self, address: str | None, settings: ClientSettings | None, hooks: Hooks | None) -> None:
        self.settings = settings or ClientSettings.from_env(address=address or "")
        self._hooks = hooks or default_hooks()

    def _address(self, service: Service) -> str:
        if service == "results":
            return self.settings.results()
        if service == "registry":
            return self.settings.registry()
        return self.settings.scheduler()

    def _addresses(self) -> dict[Service, str]:
        return {s: self._address(s) for s in SERVICES}

    # Scheduler

    def _get_task(self, task_id: str) -> Call[task_pb2.Task]:
        return Call("scheduler", "GetTask", scheduler_pb2.GetTaskRequest(task_id=task_id), _same)

    def _cancel(self, task_id: str) -> Call[TaskState]:
        req = scheduler_pb2.CancelRequest(task_id=task_id)
        return Call("scheduler", "Cancel", req, lambda r: TaskState.from_proto(r.state))

    def _explain(self, task_id: str) -> Call[Explanation]:
        return Call("scheduler", "Explain", scheduler_pb2.ExplainRequest(task_id=task_id), Explanation.from_proto)

    # Results

    def _fetch(self, task_ids: Sequence[str]) -> Call[list[task_pb2.TaskResult]]:
        return Call("results", "Get", results_pb2.GetRequest(task_ids=task_ids), lambda r: list(r.results))

    def _list_tasks(self, filters: ListFilters) -> Call[results_pb2.ListTasksResponse]:
        return Call("results", "ListTasks", filters.request(), _same)

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def _wait_slice(self, task_id: str, deadline: float | None, timeout: float | None) -> Call[task_pb2.TaskResult]:
        """The next Wait call of a wait until `deadline`; TaskTimeout when it has passed."""
        left = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
        if left <= 0:
            raise TaskTimeout(task_id, timeout)
        return Call("results", "Wait", results_pb2.WaitRequest(task_id=task_id, timeout=left), _same, left + 5)

    @staticmethod
    def _no_wait(timeout: float | None) -> bool:
        """A timeout of 0 (or less) asks once for what is recorded instead of waiting."""
        return timeout is not None and timeout <= 0

    def _final_or_timeout(
        self, result: task_pb2.TaskResult, task_id: str, timeout: float | None
    ) -> task_pb2.TaskResult:
        if self._is_final(result):
            return result
        raise TaskTimeout(task_id, timeout)

    @staticmethod
    def _is_final(result: task_pb2.TaskResult) -> bool:
        return result.state in FINAL_PROTO_STATES

    @staticmethod
    def _found_state(result: task_pb2.TaskResult) -> TaskState | None:
        """The state of a fetched result, or None when the results service does not know the task yet."""
        return TaskState.from_proto(result.state) if result.found else None

    # Registry

    def _pause_queue(self, queue: str, paused: bool) -> Call[None]:
        return Call("registry", "PauseQueue", worker_pb2.PauseQueueRequest(queue=queue, paused=paused), _none)

    def _queue_stats(self) -> Call[list[worker_pb2.QueueStat]]:
        return Call("registry", "QueueStats", worker_pb2.QueueStatsRequest(), lambda r: list(r.queues))

    def _workers(self) -> Call[list[worker_pb2.WorkerInfo]]:
        return Call("registry", "ListWorkers", worker_pb2.ListWorkersRequest(), lambda r: list(r.workers))

    def _drain_worker(self, worker_id: str) -> Call[int]:
        req = worker_pb2.DrainWorkerRequest(worker_id=worker_id)
        return Call("registry", "DrainWorker", req, lambda r: int(r.sessions))

    def _resize_worker(self, worker_id: str, concurrency: int) -> Call[int]:
        req = worker_pb2.ResizeWorkerRequest(worker_id=worker_id, concurrency=concurrency)
        return Call("registry", "ResizeWorker", req, lambda r: int(r.sessions))

    def _dead_letters(self, queue: str, limit: int) -> Call[list[DeadLetter]]:
        return Call("registry", "ListDead", worker_pb2.ListDeadRequest(queue=queue, limit=limit), _dead_letters)

    def _requeue_dead(self, queue: str, task_ids: Sequence[str]) -> Call[int]:
        req = worker_pb2.RequeueDeadRequest(queue=queue, task_ids=list(task_ids))
        return Call("registry", "RequeueDead", req, lambda r: int(r.requeued))
