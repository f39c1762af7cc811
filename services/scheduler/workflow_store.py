"""The workflows' records in Redis (keys.workflow; the layout is documented in keys.py).

A workflow is stored stage by stage: each stage's specs and task ids in a field of their own,
read once, when that stage is submitted. A completion touches only its stage's counters
(script step_done), so the cost of a member does not grow with the size of its group; a finished
group's results are read once, in member order, in a few large reads (`results`).

Workflows written before this layout kept every stage in one `spec` field; they are still read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from tasktide.v1 import workflow_pb2 as W
from tasktide_services.common.lua import Script, run_pipeline
from tasktide_services.scheduler import keys

READ_CHUNK = 10_000  # fields per HMGET when a group's results are read


@dataclass(frozen=True)
class Step:
    """A task of a workflow that succeeded: where it stands and what it returned (JSON)."""

    workflow_id: str
    stage: int
    member: int
    result: bytes
    traceparent: str  # "" when not kept


@dataclass(frozen=True)
class Progress:
    """A workflow's state and the stage it runs (or ran last)."""

    state: bytes
    stage: int
    stages: int


class WorkflowStore:
    def __init__(self, redis: Redis, scripts: dict[str, Script], expire_ms: int) -> None:
        self.redis = redis
        self._s = scripts
        self.expire_ms = expire_ms

    async def create(self, wf: W.SubmitWorkflowResponse) -> None:
        """Write a new running workflow (no expiry while it runs: `finish` sets one)."""
        fields: dict[FieldT, EncodableT] = {"stages": len(wf.stages), "stage": 0, "state": keys.WORKFLOW_RUNNING}
        for n, st in enumerate(wf.stages):
            fields[f"stage:{n}"] = st.SerializeToString()
            if st.group:
                fields[f"left:{n}"] = fields[f"size:{n}"] = len(st.task_ids)
        await self.redis.hset(keys.workflow(wf.workflow_id), mapping=fields)

    async def expire(self, workflow_id: str) -> None:
        """A workflow whose first stage was refused: let it expire (its caller has no id)."""
        await self.redis.pexpire(keys.workflow(workflow_id), self.expire_ms)

    async def progress(self, workflow_id: str) -> Progress | None:
        """State, stage and number of stages; None for no such workflow."""
        row: list[Any] = await self.redis.hmget(keys.workflow(workflow_id), ["state", "stage", "stages", "spec"])
        state, stage, stages, legacy = row
        if state is None:
            return None
        count = int(stages) if stages is not None else len(W.SubmitWorkflowResponse.FromString(legacy).stages)
        return Progress(state, int(stage or b"0"), count)

    async def after(self, workflow_id: str, stage: int) -> tuple[bool, W.Stage | None] | None:
        """What follows a done stage, in one read: whether it was a group, and the next stage
        (None after the last); None for no such workflow. The done stage itself is not read."""
        row: list[Any] = await self.redis.hmget(
            keys.workflow(workflow_id), ["stages", f"size:{stage}", f"stage:{stage + 1}"]
        )
        count, size, nxt = row
        if count is None:  # no such workflow, or one written before this layout
            legacy = await self.stages(workflow_id, stage, stage + 1)
            if not legacy:
                return None
            return legacy[0].group, legacy[1] if len(legacy) > 1 else None
        return size is not None, W.Stage.FromString(nxt) if nxt is not None else None

    async def stages(self, workflow_id: str, first: int, last: int) -> list[W.Stage]:
        """Stages first..last (inclusive) with their specs and task ids."""
        wanted = [f"stage:{n}" for n in range(first, last + 1)]
        raw: list[Any] = await self.redis.hmget(keys.workflow(workflow_id), [*wanted, "spec"])
        if all(r is not None for r in raw[:-1]):
            return [W.Stage.FromString(r) for r in raw[:-1]]
        if raw[-1] is None:
            return []
        return list(W.SubmitWorkflowResponse.FromString(raw[-1]).stages[first : last + 1])

    async def steps_done(self, steps: list[Step]) -> list[int]:
        """script step_done for each step, in one round trip: -1 no such workflow, 0 nothing to
        do, 1 the stage moved on now, 2 it had moved on before."""
        if not steps:
            return []
        script = self._s["step_done"]

        def build(pipe: Pipeline) -> None:
            for s in steps:
                argv = [s.stage, s.member, s.result, s.traceparent]
                script([keys.workflow(s.workflow_id)], argv, client=pipe)

        return [int(r) for r in await run_pipeline(self.redis, build, self._s)]

    async def results(self, workflow_id: str, stage: int, links_max: int) -> tuple[bytes, list[str]]:
        """A finished group's results as one JSON list in member order, and the traceparents
        kept by its first `links_max` members. The results are stored as JSON and joined as they
        are, never decoded here."""
        key = keys.workflow(workflow_id)
        size: Any = await self.redis.hget(key, f"size:{stage}")
        if size is None:  # written before the layout of this module: its size is in `spec`
            (st,) = await self.stages(workflow_id, stage, stage)
            size = len(st.task_ids)
        count = int(size)
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, count, READ_CHUNK):
                pipe.hmget(key, [f"r:{stage}:{m}" for m in range(start, min(count, start + READ_CHUNK))])
            pipe.hmget(key, [f"tp:{stage}:{m}" for m in range(min(count, links_max))] or ["tp:"])
            replies = await pipe.execute()
        values = [v if v is not None else b"null" for chunk in replies[:-1] for v in chunk]
        links = [tp.decode() for tp in replies[-1] if tp]
        return b"[" + b",".join(values) + b"]", links

    async def finish(self, workflow_id: str, state: str) -> bool:
        """End a running workflow (it then expires with the results); True the first time only."""
        return bool(await self._s["finish"]([keys.workflow(workflow_id)], [state, self.expire_ms]))
