"""The results service's transitions on Redis: per-task state and event log (keys.py, scripts.lua)."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2
from tasktide_services.common.lua import Script, load_scripts, run_pipeline
from tasktide_services.results import keys

FINAL = frozenset(range(task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_DEAD + 1))


def is_final(state: int) -> bool:
    return state in FINAL


class ResultsStore:
    def __init__(self, redis: Redis, expire_seconds: float) -> None:
        self.redis = redis
        self.expire_ms = int(expire_seconds * 1000)
        self._s = load_scripts(redis, Path(__file__).with_name("scripts.lua"))

    @property
    def scripts(self) -> dict[str, Script]:
        return self._s

    async def record(self, events: list[task_pb2.TaskEvent]) -> list[bool]:
        if not events:
            return []
        res = await run_pipeline(self.redis, self._s, lambda pipe: self.build_record(pipe, events))
        return [bool(r) for r in res[:-1]]

    def build_record(self, pipe: Pipeline, events: list[task_pb2.TaskEvent]) -> None:
        """`record` onto a pipeline of the caller's: one reply per event, then one for the PUBLISH."""
        script = self._s["record"]
        if events:
            for e in events:
                argv = [
                    e.state,
                    1 if e.progress_only else 0,
                    self.expire_ms,
                    e.SerializeToString(),
                    e.name,
                    e.queue,
                    e.attempt,
                    e.worker_id,
                    e.at_ms,
                    e.result.SerializeToString() if e.HasField("result") else b"",
                    e.error.SerializeToString() if e.HasField("error") else b"",
                    1 if e.reopen else 0,
                ]
                script([keys.state(e.task_id), keys.events(e.task_id)], argv, client=pipe)
            pipe.publish(keys.EVENTS, ",".join({e.task_id for e in events}))

    async def get(self, task_ids: list[str]) -> list[task_pb2.TaskResult]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for tid in task_ids:
                pipe.hgetall(keys.state(tid))
            rows = await pipe.execute()
        return [_result(tid, row) for tid, row in zip(task_ids, rows, strict=True)]

    async def events_after(self, task_id: str, cursor: str, count: int = 500) -> list[task_pb2.TaskEvent]:
        """Events after `cursor` (the number of events seen; empty or unknown: from the start)."""
        return (await self.events_after_many({task_id: cursor}, count))[task_id]

    async def events_after_many(self, cursors: dict[str, str], count: int = 500) -> dict[str, list[task_pb2.TaskEvent]]:
        """`events_after` for many tasks in one round trip."""
        script = self._s["events_after"]
        ids = list(cursors)

        def build(pipe: Pipeline) -> None:
            for tid in ids:
                seen = int(cursors[tid]) if cursors[tid].isdigit() else 0
                script([keys.state(tid), keys.events(tid)], [seen, count], client=pipe)

        replies = await run_pipeline(self.redis, self._s, build)
        out: dict[str, list[task_pb2.TaskEvent]] = {}
        for tid, res in zip(ids, replies, strict=True):
            number = int(res[0])
            evs = []
            for raw in res[1:]:
                number += 1
                ev = task_pb2.TaskEvent.FromString(raw)
                ev.cursor = str(number)
                evs.append(ev)
            out[tid] = evs
        return out


def _result(task_id: str, row: dict[bytes, bytes]) -> task_pb2.TaskResult:
    if b"s" not in row:  # no state yet (at most an event counter)
        return task_pb2.TaskResult(task_id=task_id, found=False)
    r = task_pb2.TaskResult(
        task_id=task_id,
        found=True,
        state=int(row[b"s"]),
        name=row.get(b"n", b"").decode(),
        attempt=int(row.get(b"a", b"0")),
        updated_ms=int(row.get(b"u", b"0")),
        worker_id=row.get(b"w", b"").decode(),
    )
    if b"res" in row:
        r.result.ParseFromString(row[b"res"])
    if b"err" in row:
        r.error.ParseFromString(row[b"err"])
    return r
