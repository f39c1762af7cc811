"""Workflows: chains, groups and chords (see proto/tasktide/v1/workflow.proto).

The scheduler assigns every task id when the workflow is submitted and submits the first stage.
When a workflow task reaches a final state the registry reports it (`Completed`, in batches); a
success moves the workflow on in one Lua transition (`step_done`, all of a batch in one round
trip), whose cost does not grow with the workflow's size. Each task of a later stage carries an
idempotency key of its workflow and place, so a repeated report cannot start a stage twice (the
first stage is submitted once, by SubmitWorkflow, and needs none). A report that moved the
workflow on but failed to submit the next stage fails the report: the registry keeps the task's
lease, the task runs again, and its repeated report submits that stage again.
A failure stops the workflow: the tasks of later stages are recorded FAILED with that error.
How a workflow is kept in Redis: workflow_store.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TypeAlias

import grpc

from tasktide.v1 import results_pb2, task_pb2
from tasktide.v1 import workflow_pb2 as W
from tasktide_services.common import tenancy, validate
from tasktide_services.common.auth import current_caller
from tasktide_services.common.errors import InvalidArgument, NotFound, ResourceExhausted
from tasktide_services.common.events import event
from tasktide_services.common.ids import new_id, new_ids
from tasktide_services.common.layout import WORKFLOW_HEADERS
from tasktide_services.common.peers import Peers
from tasktide_services.common.settings import Limits
from tasktide_services.scheduler import keys
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.store import SchedulerStore
from tasktide_services.scheduler.workflow_store import Step, WorkflowStore

WF, STAGE, MEMBER = WORKFLOW_HEADERS
LINKS = "tasktide-links"  # traceparents of the tasks a task follows (tracing links to them)
LINKS_MAX = 128  # a chord's callback links to its first members' traces (OpenTelemetry's default span link limit)
Ctx: TypeAlias = grpc.aio.ServicerContext
_STATES = {
    keys.WORKFLOW_RUNNING.encode(): W.WORKFLOW_STATE_RUNNING,
    b"succeeded": W.WORKFLOW_STATE_SUCCEEDED,
    b"failed": W.WORKFLOW_STATE_FAILED,
}

log = logging.getLogger("tasktide.scheduler")


def _with_first_arg(spec: task_pb2.TaskSpec, value: bytes) -> task_pb2.TaskSpec:
    """The spec with `value` (JSON) put before its arguments."""
    out = task_pb2.TaskSpec()
    out.CopyFrom(spec)
    rest = json.loads(spec.args.json) if spec.args.json else []
    tail = json.dumps(rest, separators=(",", ":")).encode()[1:] if rest else b"]"
    out.args.json = b"[" + value + (b"," + tail if rest else tail)
    return out


def _step(c: W.Completion) -> Step:
    """The place and result of a successful workflow task; InvalidArgument for a malformed report."""
    try:
        stage, member = int(c.headers[STAGE]), int(c.headers[MEMBER])
        result = c.result.json or b"null"
        json.loads(result)
    except (KeyError, ValueError) as exc:
        raise InvalidArgument(f"the completion of task {c.task_id} is malformed: {exc}") from None
    if stage < 0 or member < 0:
        raise InvalidArgument(f"the completion of task {c.task_id} has a negative stage or member")
    traceparent = c.headers.get("traceparent", "") if member < LINKS_MAX else ""
    return Step(validate.task_id(c.headers[WF]), stage, member, result, traceparent)


class WorkflowService:
    def __init__(self, store: SchedulerStore, admission: Admission, peers: Peers, limits: Limits) -> None:
        self.store = WorkflowStore(store.redis, store.scripts, store.expire_ms)
        self.admission = admission
        self.peers = peers
        self.limits = limits

    async def SubmitWorkflow(self, req: W.SubmitWorkflowRequest, ctx: Ctx) -> W.SubmitWorkflowResponse:
        if not req.stages or any(not st.tasks for st in req.stages):
            raise InvalidArgument("a workflow needs at least one stage, and every stage at least one task")
        if any(not st.group and len(st.tasks) > 1 for st in req.stages):
            raise InvalidArgument("a stage of several tasks must be a group")
        total = sum(len(st.tasks) for st in req.stages)
        if total > self.limits.max_workflow_tasks:
            raise ResourceExhausted(f"a workflow of {total} tasks; the limit is {self.limits.max_workflow_tasks}")
        caller = current_caller()
        wf = W.SubmitWorkflowResponse(workflow_id=new_id())
        for n, st in enumerate(req.stages):
            stage = wf.stages.add(group=st.group)
            stage.tasks.extend(st.tasks)
            for i, s in enumerate(stage.tasks):
                self.admission.check(s, caller)  # every stage belongs to the caller's namespace
                s.headers.update({WF: wf.workflow_id, STAGE: str(n), MEMBER: str(i)})
                # A later stage may be submitted again (a repeated report): its keys make that
                # harmless. The first is submitted once, here, under a new id: it needs none.
                s.idempotency_key = f"wf:{wf.workflow_id}:{n}:{i}" if n else ""
            stage.task_ids.extend(new_ids(len(st.tasks)))
        await self.store.create(wf)
        try:
            await self._submit(wf.stages[0].tasks, wf.stages[0].task_ids)
        except Exception:
            await self.store.expire(wf.workflow_id)  # refused: the caller has no id
            raise
        for stage in wf.stages:  # the answer carries the ids; the caller has the specs
            del stage.tasks[:]
        return wf

    async def _submit(self, specs: Sequence[task_pb2.TaskSpec], ids: Sequence[str]) -> None:
        """Submit a stage's tasks, a batch at a time."""
        step = self.limits.max_batch
        for start in range(0, len(specs), step):
            await self.admission.submit(list(specs[start : start + step]), list(ids[start : start + step]))

    async def GetWorkflow(self, req: W.GetWorkflowRequest, ctx: Ctx) -> W.Workflow:
        workflow_id = validate.task_id(req.workflow_id)
        progress = await self.store.progress(workflow_id)
        stages = await self.store.stages(workflow_id, 0, progress.stages - 1) if progress else []
        if progress is None or not stages:
            raise NotFound(f"no workflow with id {workflow_id}")
        tenancy.check_owner(current_caller(), stages[0].tasks[0], req.workflow_id)
        return W.Workflow(
            workflow_id=workflow_id,
            state=_STATES.get(progress.state, W.WORKFLOW_STATE_UNSPECIFIED),
            stage=progress.stage,
            stages=stages,
        )

    async def Completed(self, req: W.CompletedRequest, ctx: Ctx) -> W.CompletedResponse:
        """A malformed report (headers a task's submitter may have written) is logged and left
        out: reporting it again could not help, and the rest of the batch goes on."""
        ours = [c for c in req.completions if c.headers.get(WF)]
        steps: list[Step] = []
        for c in ours:  # failures first: a stage with a failed task never moves on
            try:
                if c.state != task_pb2.TASK_STATE_SUCCEEDED:
                    await self._fail(c)
                else:
                    steps.append(_step(c))
            except InvalidArgument as exc:
                log.warning("a workflow completion is left out: %s", exc)
        moved: dict[tuple[str, int], Step] = {}
        for s, code in zip(steps, await self.store.steps_done(steps), strict=True):
            if code == -1:
                log.warning("task of workflow %s reported, but the workflow is gone (expired)", s.workflow_id)
            elif code > 0:  # several repeats of one stage's end submit its next stage once
                moved.setdefault((s.workflow_id, s.stage), s)
        for s in moved.values():
            await self._next(s)
        return W.CompletedResponse()

    async def _next(self, s: Step) -> None:
        """Stage `s.stage` is done: submit the next one with its outcome, or end the workflow."""
        after = await self.store.after(s.workflow_id, s.stage)
        if after is None:
            return
        group, nxt = after
        if nxt is None:
            await self.store.finish(s.workflow_id, "succeeded")
            return
        value, links = s.result, list[str]()
        if group:
            value, links = await self.store.results(s.workflow_id, s.stage, LINKS_MAX)
        specs = [_with_first_arg(spec, value) for spec in nxt.tasks]
        if links:  # a chord's callback links to the traces of the members it follows
            for spec in specs:
                spec.headers[LINKS] = ",".join(links)
        await self._submit(specs, list(nxt.task_ids))

    async def _fail(self, c: W.Completion) -> None:
        """Stop the workflow; later stages' tasks end FAILED with the error that stopped it."""
        workflow_id = validate.task_id(c.headers[WF])
        try:
            n = int(c.headers.get(STAGE, ""))
        except ValueError:
            raise InvalidArgument(f"the completion of task {c.task_id} has no stage") from None
        progress = await self.store.progress(workflow_id)
        if progress is None:
            log.warning("task of workflow %s reported, but the workflow is gone (expired)", workflow_id)
            return
        if not await self.store.finish(workflow_id, "failed"):
            return
        err = task_pb2.TaskError()
        err.CopyFrom(c.error)
        if not err.type:
            err.type = "tasktide.WorkflowStopped"
        err.message = err.message or f"task {c.task_id} of the workflow ended {task_pb2.TaskState.Name(c.state)}"
        events = []
        for stage in await self.store.stages(workflow_id, n + 1, progress.stages - 1):
            for tid, spec in zip(stage.task_ids, stage.tasks, strict=True):
                task = task_pb2.Task(id=tid, spec=spec)
                events.append(event(task, task_pb2.TASK_STATE_FAILED, error=err, spec=spec))
        step = self.limits.max_batch
        for start in range(0, len(events), step):
            await self.peers.results.Record(results_pb2.RecordRequest(events=events[start : start + step]))
