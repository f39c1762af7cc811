"""The results service's transitions on Redis: per-task state and event log (keys.py, scripts.lua).

Three retention tiers: the result (one string: state, latest event with the value or error, the
spec) is kept for the result expiry once the task is final; its timeline (the event log) for the
timeline expiry, shorter by default; its entry in the task index (index.py: what ListTasks lists) for
the index retention, as long as the timeline by default. A watcher that reads a task whose timeline
has expired gets the event that set its final state, marked with TIMELINE_EXPIRED in its message.
A plain timeline (queued, ran once, ended) recorded in one call is folded into the result instead
of being logged (folded.py): it reads the same, for as long as the result is kept.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2
from tasktide_services.common.layout import is_final
from tasktide_services.common.lua import LuaFile, Script, load_scripts, preload, run_pipeline
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results import folded, keys
from tasktide_services.results.index import TaskIndex
from tasktide_services.results.recent import RecentFinals

log = logging.getLogger("tasktide.results")
SCRIPTS = LuaFile(Path(__file__).with_name("scripts.lua"), keys.LUA_CONSTANTS)
EXPIRED = 2  # events_after: the timeline expired, the latest event stands for it
FOLDED = 3  # events_after: the timeline was folded into the result (folded.py)
TIMELINE_EXPIRED = "the earlier events of this task are no longer kept (its timeline expired)"


class ResultsStore:
    def __init__(
        self,
        redis: Redis,
        expire_seconds: float,
        index: IndexSettings | None = None,
        timeline_seconds: float | None = None,
        one_node: bool = False,
    ) -> None:
        """`timeline_seconds`: how long a finished task's event log is kept (None, or more than
        `expire_seconds`: as long as its result). `one_node`: Redis is one server, not a cluster,
        so a script may touch a task's keys and an index bucket's together: the server sets it on
        one Redis server, not on a cluster (server.py)."""
        self.redis = redis
        self.one_node = one_node
        # Told the ids of tasks whose final events this process has just recorded (`recorded`):
        # the results service wakes its own waiters with it, before the channel's message comes.
        self.on_final: Callable[[list[str]], None] | None = None
        self.expire_ms = int(expire_seconds * 1000)
        timeline = expire_seconds if timeline_seconds is None else min(timeline_seconds, expire_seconds)
        self.timeline_ms = max(1, int(timeline * 1000))
        self._legacy_until: int | None = None  # Unix ms until which a :st hash may exist (keys.py)
        self._s = load_scripts(redis, SCRIPTS)
        self.index = TaskIndex(index or IndexSettings(), self._s)
        # Results this process wrote as final (`recorded`), for its own followers (`ended_here`).
        self._ended: RecentFinals[Stored] = RecentFinals()
        # Ends this process's messages on the channel (keys.EVENTS): its notifier knows its own.
        self.origin = keys.ORIGIN_MARK + uuid.uuid4().hex[:12]

    @property
    def scripts(self) -> dict[str, Script]:
        return self._s

    async def record(self, events: list[task_pb2.TaskEvent]) -> list[bool]:
        if not events:
            return []

        def build(pipe: Pipeline) -> None:
            self.build_record(pipe, events)

        try:
            replies = await run_pipeline(self.redis, build, self._s)
        except BaseException:
            self.recorded(events, [])
            raise
        self.recorded(events, replies)
        return accepted(events, replies)

    def recorded(self, events: list[task_pb2.TaskEvent], replies: list[object]) -> None:
        """After a pipeline with `build_record(events)` ran, given the replies from its first on:
        keeps the results it wrote as final for this process's followers (`ended_here`), then tells
        `on_final` the tasks that ended. Called with no replies when the pipeline failed (what it
        wrote is unknown): the followers then read the tasks from Redis. Either way it must be
        called: the channel's message from this process wakes no follower here."""
        by_task = _by_task(events)
        for tid in by_task:
            self._ended.drop(tid)  # a reopened task's earlier result is not handed out
        for (tid, evs), reply in zip(by_task.items(), replies, strict=False):
            written = reply[-1] if isinstance(reply, list) and len(reply) > len(evs) else None
            if isinstance(written, bytes):
                self._ended.put(tid, _parse(written), len(written))
        if self.on_final is not None:
            ended = [e.task_id for e in events if is_final(e.state) and not e.progress_only]
            if ended:
                self.on_final(ended)

    def changed_elsewhere(self, task_ids: list[str]) -> None:
        """Another process wrote to these tasks (its notice named them): a result this process
        kept of its own is no longer handed out as written (a dead task requeued elsewhere)."""
        for tid in task_ids:
            self._ended.drop(tid)

    def ended_here(self, task_ids: list[str]) -> dict[str, task_pb2.TaskResult]:
        """The final results among `task_ids` that this process has just written (recent.py), as
        `get` would read them now."""
        return {tid: _result(tid, st) for tid, st in self._ended.get(task_ids).items()}

    def build_record(self, pipe: Pipeline, events: list[task_pb2.TaskEvent]) -> int:
        """`record` onto a pipeline of the caller's: one script per task (its events in order),
        then a PUBLISH naming the tasks, then the index entries (index.py) in the same round trip.
        The events of one task alone on one Redis server (a task submitted or finished one by one)
        carry its index entry in their `record` call instead: one script call, not two.
        Returns the place of its first reply among the pipeline's: `accepted()` and `recorded()`
        read the replies from there."""
        first = len(pipe.command_stack)
        if not events:
            return first
        script = self._s["record"]
        # Unknown until prepare() has run: then a state hash of the previous layout may exist.
        legacy = 1 if self._legacy_until is None or time.time() * 1000 < self._legacy_until else 0
        by_task = _by_task(events)
        inline = self.index.puts(events) if self.one_node and len(by_task) == 1 else []
        for tid, evs in by_task.items():
            forms = _kept(evs)
            started = None if legacy else folded.fold(evs, forms)
            plain: int | str = legacy if started is None else f"f{started}"
            argv: list[int | str | bytes] = [self.expire_ms, self.timeline_ms, plain, len(evs)]
            for e, (kept, slim, head) in zip(evs, forms, strict=True):
                argv += _event_args(e, kept, slim, head)
            if len(inline) == 1:
                bucket_keys, index_argv = inline[0]
                script([*keys.task_keys(tid), *bucket_keys], [*argv, *index_argv], client=pipe)
            else:
                script(keys.task_keys(tid), argv, client=pipe)
        pipe.publish(keys.EVENTS, ",".join([*{e.task_id for e in events}, self.origin]))
        if len(inline) != 1:
            self.index.build_put(pipe, events)
        return first

    async def get(self, task_ids: list[str]) -> list[task_pb2.TaskResult]:
        found = await self._read(task_ids)
        return [_result(tid, found[tid]) for tid in task_ids]

    async def finals(self, task_ids: list[str]) -> dict[str, task_pb2.TaskEvent]:
        """The final event of each task that has one (with its cursor), in one round trip at most:
        a result this process has just written is taken as written (`ended_here`)."""
        here = self._ended.get(task_ids)
        rest = [tid for tid in task_ids if tid not in here]
        read = await self._read(rest) if rest else {}
        out: dict[str, task_pb2.TaskEvent] = {}
        for tid in task_ids:
            st = here.get(tid) or read.get(tid)
            if st is not None and st.event and is_final(st.state):
                ev = _named(task_pb2.TaskEvent.FromString(st.event), _spec(st.spec))
                ev.task_id, ev.cursor = tid, str(st.appended)
                out[tid] = ev
        return out

    async def prepare(self) -> None:
        """At startup, before anything is written: loads the scripts into Redis (lua.preload) and
        learns until when a state hash of the previous layout may exist (keys.LAYOUT). Each is left
        for later (a NOSCRIPT, the first read) if Redis cannot be reached now."""
        await preload(self.redis, self._s)
        try:
            await self._legacy_possible()
        except Exception:  # noqa: BLE001 - Redis away at startup: the first read asks again
            log.warning("reading %s failed; asked again on the first read", keys.LAYOUT, exc_info=True)

    async def _legacy_possible(self) -> bool:
        """Whether a state hash of the previous layout may still exist: until the result expiry has
        passed since this Redis first served the present one (never, if it held no data then)."""
        if self._legacy_until is None:
            now = int(time.time() * 1000)
            first = now if await self.redis.dbsize() else 0
            await self.redis.set(keys.LAYOUT, first, nx=True)
            since = int(await self.redis.get(keys.LAYOUT) or 0)
            self._legacy_until = since + self.expire_ms if since else 0
        return int(time.time() * 1000) < self._legacy_until

    async def _read(self, task_ids: list[str]) -> dict[str, Stored | None]:
        """The stored result of each task, in one round trip (a second one, for the tasks not
        found, reads the state hashes a previous version kept: keys.py)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for tid in task_ids:
                pipe.get(keys.task_keys(tid).result)
            values = await pipe.execute()
        out = {tid: _parse(v) if v is not None else None for tid, v in zip(task_ids, values, strict=True)}
        missing = [tid for tid, st in out.items() if st is None]
        if missing and await self._legacy_possible():
            async with self.redis.pipeline(transaction=False) as pipe:
                for tid in missing:
                    pipe.hmget(keys.task_keys(tid).legacy, "s", "c", "t0", "p", "e")
                rows = await pipe.execute()
            for tid, (st, c, t0, spec, e) in zip(missing, rows, strict=True):
                if st is not None:
                    out[tid] = Stored(int(st), int(c or 0), int(t0 or 0), spec or b"", e or b"")
        return out

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
                script(keys.task_keys(tid), [seen, count], client=pipe)

        replies = await run_pipeline(self.redis, build, self._s)
        return {tid: _events(tid, res)[:count] for tid, res in zip(ids, replies, strict=True)}


class Stored(NamedTuple):
    """A task's result as kept (keys.py): its parts, the spec and event still serialized."""

    state: int
    appended: int  # events ever appended to its log (or folded into the result)
    created_ms: int
    spec: bytes
    event: bytes  # the latest event that set the state, without its task id


def _parse(value: bytes) -> Stored:
    head, _, rest = value.partition(b":")
    state, count, created, size = head.split(b",")[:4]  # a fifth part: a folded timeline
    n = int(size)
    return Stored(int(state), int(count), int(created or 0), rest[:n], rest[n:])


def _event_args(e: task_pb2.TaskEvent, kept: bytes, slim: bytes, head: bytes) -> list[int | bytes]:
    """An event's arguments of `record` (scripts.lua): its kind (state and flags in one number),
    the event as kept, then the spec and submission time if it carries the spec, then the slim
    event and the spec head if it has a slim form (`_kept`). Empty parts are left out."""
    spec = e.spec.SerializeToString() if e.HasField("spec") else b""
    kind = int(e.state) * 16 + 8 * e.progress_only + 4 * e.reopen + 2 * bool(spec) + bool(slim)
    out: list[int | bytes] = [kind, kept]
    if spec:
        out += [spec, e.at_ms]
    if slim:
        out += [slim, head]
    return out


def _kept(evs: list[task_pb2.TaskEvent]) -> list[tuple[bytes, bytes, bytes]]:
    """Per event of one task's `record` call: the event as kept (without its task id and spec),
    then the same event without its name and queue and the start of a serialized spec with that
    name and queue (`record` keeps this slim event instead when the task's spec starts so; a reader
    takes them back from the spec: `_named`), or two empty strings. From the first event that
    carries the spec on, the script holds that spec when it writes, so an event naming the same
    task and queue is sent slim only: serialized once."""
    out = []
    carried: task_pb2.TaskSpec | None = None
    for e in evs:
        if carried is None and e.HasField("spec"):
            carried = e.spec
        copy = task_pb2.TaskEvent()
        copy.CopyFrom(e)
        copy.ClearField("task_id")
        copy.ClearField("spec")
        if not e.name:
            out.append((copy.SerializeToString(), b"", b""))
            continue
        same = carried is not None and e.name == carried.name and e.queue == carried.queue
        full = b"" if same else copy.SerializeToString()
        copy.ClearField("name")
        copy.ClearField("queue")
        slim = copy.SerializeToString()
        out.append((slim, b"", b"") if same else (full, slim, _spec_head(e.name, e.queue)))
    return out


@functools.lru_cache(maxsize=1024)
def _spec_head(name: str, queue: str) -> bytes:
    """The start of a serialized TaskSpec with this name and queue (its first two fields)."""
    return task_pb2.TaskSpec(name=name, queue=queue).SerializeToString()


def _named(ev: task_pb2.TaskEvent, spec: task_pb2.TaskSpec | None) -> task_pb2.TaskEvent:
    """An event as recorded: a slim one (kept without name and queue) takes them from the spec."""
    if not ev.name and spec is not None:
        ev.name, ev.queue = spec.name, spec.queue
    return ev


def _spec(raw: bytes) -> task_pb2.TaskSpec | None:
    return task_pb2.TaskSpec.FromString(raw) if raw else None


def _events(task_id: str, reply: list[bytes]) -> list[task_pb2.TaskEvent]:
    """The events of an `events_after` reply, each with its cursor; the first event of a task
    carries its spec again; an event standing for an expired timeline says so in its message."""
    number, spec, gone = int(reply[0]), reply[1], int(reply[2])
    expired = gone == EXPIRED
    parsed = _spec(spec)
    if gone == FOLDED:  # submitted ms, started ms after it, the final event: rebuilt whole
        submitted, final = int(reply[3]), task_pb2.TaskEvent.FromString(reply[5])
        kept = [*folded.unfold(final, submitted, submitted + int(reply[4])), final][number:]
    else:
        kept = [task_pb2.TaskEvent.FromString(raw) for raw in reply[3:]]
    evs = []
    for ev in kept:
        number += 1
        _named(ev, parsed)
        ev.task_id, ev.cursor = task_id, str(number)
        evs.append(ev)
    if evs and spec and number - len(evs) == 0:
        evs[0].spec.ParseFromString(spec)
    if expired:
        for ev in evs:
            ev.message = f"{TIMELINE_EXPIRED}; {ev.message}" if ev.message else TIMELINE_EXPIRED
    return evs


def _by_task(events: list[task_pb2.TaskEvent]) -> dict[str, list[task_pb2.TaskEvent]]:
    grouped: dict[str, list[task_pb2.TaskEvent]] = {}
    for e in events:
        grouped.setdefault(e.task_id, []).append(e)
    return grouped


def accepted(events: list[task_pb2.TaskEvent], replies: list[object]) -> list[bool]:
    """Per event, in the caller's order, whether `record` took it (from the pipeline's replies)."""
    flags: dict[str, list[bool]] = {}
    for tid, reply in zip(_by_task(events), replies, strict=False):
        flags[tid] = [bool(x) for x in reply]  # type: ignore[attr-defined]
    out = []
    for e in events:
        out.append(flags[e.task_id].pop(0))
    return out


def _result(task_id: str, st: Stored | None) -> task_pb2.TaskResult:
    if st is None or st.state == 0:  # nothing recorded yet
        return task_pb2.TaskResult(task_id=task_id, found=False)
    e = _named(task_pb2.TaskEvent.FromString(st.event), _spec(st.spec)) if st.event else task_pb2.TaskEvent()
    r = task_pb2.TaskResult(
        task_id=task_id,
        found=True,
        state=st.state,  # type: ignore[arg-type]
        name=e.name,
        attempt=e.attempt,
        updated_ms=e.at_ms,
        worker_id=e.worker_id,
    )
    if e.HasField("result"):
        r.result.CopyFrom(e.result)
    if e.HasField("error"):
        r.error.CopyFrom(e.error)
    if st.spec:
        r.spec.ParseFromString(st.spec)
        r.created_ms = st.created_ms
    return r
