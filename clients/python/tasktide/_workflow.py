"""Workflows: chain, group and chord of task signatures, run by the platform.

    chain(add.s(1, 2), add.s(10), mul.s(2))      # each result is the next task's first argument
    group(add.s(i, i) for i in range(10))        # in parallel; the result is the list of results
    chord(group(...), tsum.s())                  # a group, then a task given the list
    chain(fetch.s(url), group(parse.s(), index.s()), report.s())

`apply_async()` submits the whole workflow at once and returns a WorkflowHandle whose `get()` is
the last stage's result (a list for a group). A failure stops the workflow: `get()` raises it.
A group's results are collected as its members finish, a few thousand per Watch stream
(`WATCH_CHUNK`), not one call per member.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from tasktide._errors import translated
from tasktide._exceptions import ConfigurationError, TaskTimeout
from tasktide._handle import TaskHandle
from tasktide._results import unwrap
from tasktide.v1 import results_pb2, task_pb2, workflow_pb2, workflow_pb2_grpc

if TYPE_CHECKING:
    from tasktide._app import Task
    from tasktide._client import Client

WATCH_CHUNK = 5_000  # task ids per Watch stream when a group's results are collected


@dataclass(frozen=True)
class Signature:
    """A task with its arguments and options, not submitted yet (`task.s(...)`)."""

    task: Task[Any, Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def set(self, **options: Any) -> Signature:
        """The same signature with options (queue, priority, countdown...) added."""
        return Signature(self.task, self.args, self.kwargs, {**self.options, **options})

    def spec(self) -> task_pb2.TaskSpec:
        """The TaskSpec of this signature."""
        return self.task.spec(self.args, self.kwargs, **self.options)

    def apply_async(self, client: Client | None = None) -> TaskHandle:
        """Submit this signature as one task.

        Args:
            client: the client to use (default: the task's App's).
        """
        return (client or self.task.app.client).submit_spec(self.spec())

    def delay(self) -> TaskHandle:
        """Submit this signature with the App's client."""
        return self.apply_async()


class _Stage:
    def __init__(self, sigs: list[Signature], is_group: bool) -> None:
        self.sigs = sigs
        self.group = is_group


class Workflow:
    """Stages of tasks (a chain of single tasks and groups), submitted together; see chain/group/chord."""

    def __init__(self, stages: list[_Stage]) -> None:
        if not stages or any(not st.sigs for st in stages):
            raise ConfigurationError("a workflow needs at least one task in every part")
        self.stages = stages

    def apply_async(self, client: Client | None = None) -> WorkflowHandle:
        """Submit the whole workflow at once.

        Args:
            client: the client to use (default: the first task's App's).
        """
        client = client or self.stages[0].sigs[0].task.app.client
        req = workflow_pb2.SubmitWorkflowRequest()
        for st in self.stages:
            stage = req.stages.add(group=st.group)
            stage.tasks.extend(s.spec() for s in st.sigs)
        stub = workflow_pb2_grpc.WorkflowsStub(client.scheduler_channel)
        specs = [t for st in req.stages for t in st.tasks]
        with client._hooks.sending(specs) as sent, translated(client.settings.scheduler()):  # tracing: one send
            resp = stub.SubmitWorkflow(req)
            sent([t for st in resp.stages for t in st.task_ids])
        return WorkflowHandle(resp, client)

    def delay(self) -> WorkflowHandle:
        """Submit the whole workflow with the App's client."""
        return self.apply_async()


Part = Signature | Workflow


def _stages(parts: Iterable[Part]) -> list[_Stage]:
    out: list[_Stage] = []
    for p in parts:
        if isinstance(p, Workflow):
            out += p.stages
        else:
            out.append(_Stage([p], False))
    return out


def chain(*parts: Part) -> Workflow:
    """Run parts one after another; each result is the first argument of the next part's tasks."""
    return Workflow(_stages(parts))


def group(*sigs: Signature | Iterable[Signature]) -> Workflow:
    """Run tasks in parallel; the result is the list of their results, in order."""
    flat: list[Signature] = []
    for s in sigs:
        flat += [s] if isinstance(s, Signature) else list(s)
    if any(not isinstance(s, Signature) for s in flat):
        raise ConfigurationError("a group holds task signatures (task.s(...))")
    return Workflow([_Stage(flat, True)])


def chord(header: Workflow | Iterable[Signature], body: Signature) -> Workflow:
    """A group, then `body` called with the list of the group's results."""
    head = header if isinstance(header, Workflow) else group(*header)
    if len(head.stages) != 1 or not head.stages[0].group:
        raise ConfigurationError("a chord's header is one group")
    return Workflow([*head.stages, _Stage([body], False)])


class WorkflowHandle:
    """A submitted workflow: its id, its tasks' ids by stage, its result and state."""

    def __init__(self, resp: workflow_pb2.SubmitWorkflowResponse, client: Client) -> None:
        self.id = resp.workflow_id
        self._stages = resp.stages
        self._client = client
        self.task_ids: list[list[str]] = [list(st.task_ids) for st in resp.stages]

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    def tasks(self) -> list[TaskHandle]:
        """A handle for each task of the workflow, stage by stage."""
        return [TaskHandle(tid, self._client) for ids in self.task_ids for tid in ids]

    def get(self, timeout: float | None = None) -> Any:
        """The last stage's result (a list for a group, in member order); raises TaskFailed when
        the workflow failed (for a group: as soon as a failed member is seen), TaskTimeout after
        `timeout` seconds."""
        last = self._stages[-1]
        if not last.group:
            return self._client.result(last.task_ids[0], timeout)
        finals = collect(self._client, list(last.task_ids), timeout)
        return [unwrap(finals[tid]) for tid in last.task_ids]

    def state(self) -> str:
        """RUNNING, SUCCEEDED or FAILED."""
        stub = workflow_pb2_grpc.WorkflowsStub(self._client.scheduler_channel)
        with translated(self._client.settings.scheduler()):
            wf = stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=self.id))
        return workflow_pb2.WorkflowState.Name(wf.state).removeprefix("WORKFLOW_STATE_")


def collect(client: Client, task_ids: Sequence[str], timeout: float | None) -> dict[str, task_pb2.TaskResult]:
    """The final result of each task, watched WATCH_CHUNK tasks per stream; the first failure is
    raised as soon as it is seen (TaskFailed), TaskTimeout when `timeout` passes first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    stub = client._stubs["results"]
    out: dict[str, task_pb2.TaskResult] = {}
    for start in range(0, len(task_ids), WATCH_CHUNK):
        chunk = task_ids[start : start + WATCH_CHUNK]
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TaskTimeout(chunk[0], timeout)
        req = results_pb2.WatchRequest(task_ids=chunk, until_final=True, final_only=True)
        with translated(client.settings.results()):
            try:
                for batch in stub.WatchBatches(req, timeout=left):
                    for ev in batch.events:
                        if ev.progress_only:
                            continue
                        res = task_pb2.TaskResult(task_id=ev.task_id, state=ev.state, result=ev.result, error=ev.error)
                        if ev.state != task_pb2.TASK_STATE_SUCCEEDED:
                            unwrap(res)  # raises its failure
                        out[ev.task_id] = res
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise TaskTimeout(next(t for t in chunk if t not in out), timeout) from None
                raise
    return out
