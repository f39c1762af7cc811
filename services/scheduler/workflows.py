"""Workflows: chains, groups and chords (see proto/tasktide/v1/workflow.proto).

The scheduler assigns every task id when the workflow is submitted and submits the first stage.
When a workflow task reaches a final state the registry reports it (`Completed`); a success moves
the workflow on, in one Lua transition per step (`member_done`, `advance`), and each task carries an
idempotency key of its workflow and place, so a repeated report cannot start a stage twice. A report
that moved the workflow on but failed to submit the next stage fails the report: the registry keeps
the task's lease, the task runs again, and its repeated report submits that stage again.
A failure stops the workflow: the tasks of later stages are recorded FAILED with that error.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, TypeAlias

import grpc
from redis.typing import EncodableT, FieldT

from tasktide.v1 import results_pb2, task_pb2
from tasktide.v1 import workflow_pb2 as W
from tasktide_services.common import tenancy, validate
from tasktide_services.common.auth import current_caller
from tasktide_services.common.errors import InvalidArgument, NotFound
from tasktide_services.common.events import event
from tasktide_services.common.peers import Peers
from tasktide_services.scheduler import keys
from tasktide_services.scheduler.admission import Admission
from tasktide_services.scheduler.store import SchedulerStore

WF, STAGE, MEMBER = "tasktide-workflow", "tasktide-stage", "tasktide-member"
LINKS = "tasktide-links"  # traceparents of the tasks a task follows (tracing links to them)
Ctx: TypeAlias = grpc.aio.ServicerContext
_STATES = {
    keys.WORKFLOW_RUNNING.encode(): W.WORKFLOW_STATE_RUNNING,
    b"succeeded": W.WORKFLOW_STATE_SUCCEEDED,
    b"failed": W.WORKFLOW_STATE_FAILED,
}


def _with_first_arg(spec: task_pb2.TaskSpec, value: Any) -> task_pb2.TaskSpec:
    out = task_pb2.TaskSpec()
    out.CopyFrom(spec)
    args = json.loads(spec.args.json) if spec.args.json else []
    out.args.json = json.dumps([value, *args], separators=(",", ":")).encode()
    return out


class WorkflowService:
    def __init__(self, store: SchedulerStore, admission: Admission, peers: Peers) -> None:
        self.store = store
        self.admission = admission
        self.peers = peers

    async def SubmitWorkflow(self, req: W.SubmitWorkflowRequest, ctx: Ctx) -> W.SubmitWorkflowResponse:
        if not req.stages or any(not st.tasks for st in req.stages):
            raise InvalidArgument("a workflow needs at least one stage, and every stage at least one task")
        if any(not st.group and len(st.tasks) > 1 for st in req.stages):
            raise InvalidArgument("a stage of several tasks must be a group")
        self.admission.check_batch(sum(len(st.tasks) for st in req.stages))
        caller = current_caller()
        wf = W.SubmitWorkflowResponse(workflow_id=uuid.uuid4().hex)
        for n, st in enumerate(req.stages):
            stage = wf.stages.add(group=st.group)
            for i, spec in enumerate(st.tasks):
                self.admission.check(spec, caller)  # every stage belongs to the caller's namespace
                s = stage.tasks.add()
                s.CopyFrom(spec)
                s.headers.update({WF: wf.workflow_id, STAGE: str(n), MEMBER: str(i)})
                s.idempotency_key = f"wf:{wf.workflow_id}:{n}:{i}"
                stage.task_ids.append(uuid.uuid4().hex)
        key = keys.workflow(wf.workflow_id)
        fields: dict[FieldT, EncodableT] = {"spec": wf.SerializeToString(), "stage": 0, "state": keys.WORKFLOW_RUNNING}
        fields.update({f"left:{n}": len(st.tasks) for n, st in enumerate(wf.stages) if st.group})
        await self.store.redis.hset(key, mapping=fields)  # no expiry while it runs (`finish` sets one)
        first = wf.stages[0]
        try:
            await self.admission.submit(list(first.tasks), list(first.task_ids))
        except Exception:
            await self.store.redis.pexpire(key, self.store.expire_ms)  # refused: the caller has no id
            raise
        return wf

    async def _load(self, workflow_id: str) -> tuple[W.SubmitWorkflowResponse, dict[bytes, bytes]]:
        row: Any = await self.store.redis.hgetall(keys.workflow(workflow_id))
        if not row:
            raise NotFound(f"no workflow with id {workflow_id}")
        return W.SubmitWorkflowResponse.FromString(row[b"spec"]), row

    async def GetWorkflow(self, req: W.GetWorkflowRequest, ctx: Ctx) -> W.Workflow:
        wf, row = await self._load(validate.task_id(req.workflow_id))
        tenancy.check_owner(current_caller(), wf.stages[0].tasks[0], req.workflow_id)
        return W.Workflow(
            workflow_id=wf.workflow_id,
            state=_STATES.get(row.get(b"state", b""), W.WORKFLOW_STATE_UNSPECIFIED),
            stage=int(row.get(b"stage", b"0")),
            stages=wf.stages,
        )

    async def Completed(self, req: W.CompletedRequest, ctx: Ctx) -> W.CompletedResponse:
        for c in req.completions:
            if c.headers.get(WF):
                await self._completed(c)
        return W.CompletedResponse()

    async def _completed(self, c: W.Completion) -> None:
        wf, _ = await self._load(validate.task_id(c.headers[WF]))
        n, member = int(c.headers[STAGE]), int(c.headers[MEMBER])
        key = keys.workflow(wf.workflow_id)
        if c.state != task_pb2.TASK_STATE_SUCCEEDED:
            await self._fail(wf, n, c)
            return
        value = json.loads(c.result.json) if c.result.json else None
        stage = wf.stages[n]
        links: list[str] = []
        if stage.group:
            traceparent = c.headers.get("traceparent", "")
            argv = [n, member, json.dumps(value), len(stage.tasks), traceparent]
            done = await self.store.scripts["member_done"]([key], argv)
            if not done:
                return
            count = len(stage.tasks)
            value = [json.loads(r) for r in done[:count]]
            links = [tp.decode() for tp in done[count:] if tp]
        # 1: moved on now; 2: moved on before, by a completion whose submission of the next stage
        # may have failed (its task then runs again and reports again): submitted again, its
        # idempotency keys make that harmless.
        if not await self.store.scripts["advance"]([key], [n]):
            return
        if n + 1 == len(wf.stages):
            await self.store.scripts["finish"]([key], ["succeeded", self.store.expire_ms])
            return
        nxt = wf.stages[n + 1]
        specs = [_with_first_arg(s, value) for s in nxt.tasks]
        if links:  # a chord's callback links to the traces of the members it follows
            for spec in specs:
                spec.headers[LINKS] = ",".join(links)
        await self.admission.submit(specs, list(nxt.task_ids))

    async def _fail(self, wf: W.SubmitWorkflowResponse, n: int, c: W.Completion) -> None:
        """Stop the workflow; later stages' tasks end FAILED with the error that stopped it."""
        finish = self.store.scripts["finish"]
        if not await finish([keys.workflow(wf.workflow_id)], ["failed", self.store.expire_ms]):
            return
        err = task_pb2.TaskError()
        err.CopyFrom(c.error)
        if not err.type:
            err.type = "tasktide.WorkflowStopped"
        err.message = err.message or f"task {c.task_id} of the workflow ended {task_pb2.TaskState.Name(c.state)}"
        events = []
        for stage in wf.stages[n + 1 :]:
            for tid, spec in zip(stage.task_ids, stage.tasks, strict=True):
                task = task_pb2.Task(id=tid, spec=spec)
                events.append(event(task, task_pb2.TASK_STATE_FAILED, error=err, spec=spec))
        if events:
            await self.peers.results.Record(results_pb2.RecordRequest(events=events))
