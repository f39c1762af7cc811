"""The visibility index of tasks (keys.py, scripts index_*): written beside each recorded event,
read by ListTasks.

An entry per task and namespace sits in the time bucket of the task's latest change, ordered by
that time. Listing walks the buckets from the newest, lets Redis match the filters on the entries,
then reads the candidates' state hashes (the truth) and keeps a task only where its latest change
falls in the bucket the entry came from: an entry left in an earlier bucket by a task that changed
since is skipped, so a task is listed once, at its latest change. A task that changes while a
listing walks moves ahead of the walk, so that listing leaves it out (a listing never shows it twice).

An entry also keeps when the task's latest attempt became runnable (its QUEUED event) and when it
started (handed to a worker: RUNNING; once the attempt ended, when the worker started running it:
the end event's time less its run_ms), which ListTasks returns as ready_ms and started_ms: wait
time and run time. They come from the events of the batch written, else from the task's entry in
the same bucket (index_put carries them), so a time the index cannot know (its event reached
another bucket in another batch) is unknown (0), never wrong.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2
from tasktide_services.common import tenancy
from tasktide_services.common.auth import DEFAULT_NAMESPACE
from tasktide_services.common.errors import InvalidArgument
from tasktide_services.common.layout import is_final
from tasktide_services.common.lua import Script, run_pipeline
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results import keys

# Reads the state hashes of task ids (ResultsStore.get): what a listing keeps is checked there.
TruthReader = Callable[[list[str]], Awaitable[list[task_pb2.TaskResult]]]

SCAN_BUDGET = 5_000  # index entries a page script looks at per call
MAX_CALLS = 50  # page scripts per listing; past this a short page is returned with a cursor
# Event times come from the clocks of workers and services: a listing up to "now" looks this far
# past the results service's clock.
CLOCK_SKEW_MS = 60_000


def namespace_of_event(e: task_pb2.TaskEvent) -> str:
    """The namespace of an event's task: from its spec, else from its qualified queue (tenancy)."""
    if e.HasField("spec"):
        return tenancy.namespace_of(e.spec)
    queue = e.queue or e.spec.queue
    return queue.split(tenancy.SEP, 1)[0] if tenancy.SEP in queue else DEFAULT_NAMESPACE


def _clean(text: str) -> str:
    return text.replace(keys.INDEX_SEP, " ")


def entry_of(e: task_pb2.TaskEvent) -> str:
    """What the filters match (index_page): state, name, queue, worker, error type. The entry
    stored is this, then the ready and start times (index_put)."""
    fields = (str(int(e.state)), e.name, e.queue or e.spec.queue, e.worker_id, e.error.type)
    entry = keys.INDEX_SEP.join(fields)
    if entry.count(keys.INDEX_SEP) == len(fields) - 1:  # no field holds the separator (the usual case)
        return entry
    return keys.INDEX_SEP.join(_clean(f) for f in fields)


# The times of a task's latest attempt an index entry carries (see `_latest`): a Unix ms, CARRY
# (keep what the bucket's entry of the task holds) or NONE (not known: forget it).
CARRY: int = -1
NONE: int = -2


@dataclass
class Timing:
    """A task's ready and start times, as the events of one batch set them (CARRY: not set)."""

    ready: int = CARRY
    start: int = CARRY
    # The batch holds the task's submission (the event that carries its spec): the task most
    # likely has no index entry yet, which index_put then writes without reading one first.
    submitted: bool = False

    def follow(self, e: task_pb2.TaskEvent) -> None:
        """QUEUED: the attempt became runnable (no start yet); SCHEDULED: waiting for its time
        (neither); RUNNING: handed to a worker (started, until the worker says when it did). The
        end of an attempt keeps both, with the start the worker reported where it did."""
        if e.HasField("spec"):
            self.submitted = True
        if e.state == task_pb2.TASK_STATE_QUEUED:
            self.ready, self.start = e.at_ms, NONE
        elif e.state == task_pb2.TASK_STATE_SCHEDULED:
            self.ready, self.start = NONE, NONE
        elif e.state == task_pb2.TASK_STATE_RUNNING:
            self.start = e.at_ms
        elif e.HasField("run_ms"):
            self.start = e.at_ms - e.run_ms

    def argv(self, bucket_ms: int) -> list[str]:
        """index_put's ready and start arguments: ms from the start of the entry's bucket (as
        stored), '' to carry, 'n' for none."""
        return [_time_arg(self.ready, bucket_ms), _time_arg(self.start, bucket_ms)]


def _how(e: task_pb2.TaskEvent, timing: Timing) -> int:
    """index_put's `how` of a task's entry: 1 a reopen, 2 a change of a task submitted in the
    same batch (most likely its first entry in the bucket), else 0."""
    if e.reopen:
        return 1
    return 2 if timing.submitted else 0


def _time_arg(at_ms: int, bucket_ms: int) -> str:
    if at_ms == CARRY:
        return ""
    if at_ms == NONE:
        return "n"
    return str(at_ms - bucket_ms)


def times_of(tail: str, bucket_ms: int) -> tuple[int, int]:
    """(ready_ms, started_ms) from the times an entry holds (index_page's reply; 0: not known)."""
    parts = tail.split(keys.INDEX_SEP)
    out = [0, 0]
    for i, part in enumerate(parts[:2]):
        try:
            out[i] = bucket_ms + int(part) if part else 0
        except ValueError:
            out[i] = 0
    return out[0], out[1]


@dataclass(frozen=True)
class Filters:
    states: frozenset[int] = frozenset()
    name: str = ""
    queue: str = ""  # as stored (qualified by the namespace)
    worker_id: str = ""
    error_type: str = ""

    def argv(self) -> list[str]:
        states = "," + ",".join(str(s) for s in sorted(self.states)) + "," if self.states else ""
        return [states, self.name, self.queue, self.worker_id, self.error_type]

    def match(self, r: task_pb2.TaskResult) -> bool:
        return (
            (not self.states or int(r.state) in self.states)
            and (not self.name or r.name == self.name)
            and (not self.queue or r.spec.queue == self.queue)
            and (not self.worker_id or r.worker_id == self.worker_id)
            and (not self.error_type or r.error.type == self.error_type)
        )


@dataclass
class Page:
    tasks: list[task_pb2.TaskResult] = field(default_factory=list)
    cursor: str = ""


def encode_cursor(at_ms: int, task_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at_ms}:{task_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, task_id = raw.split(":", 1)
        return int(at), task_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("cursor is not one ListTasks returned") from None


class TaskIndex:
    def __init__(self, settings: IndexSettings, scripts: Mapping[str, Script]) -> None:
        self.settings = settings
        self.bucket_ms = max(int(settings.bucket * 1000), 1)
        self.retention_ms = int(settings.retention * 1000)
        self._s = scripts

    def bucket(self, at_ms: int) -> int:
        return at_ms - at_ms % self.bucket_ms

    def build_put(self, pipe: Pipeline, events: list[task_pb2.TaskEvent]) -> None:
        """The index entries of `events` onto the caller's pipeline: one script per bucket touched,
        one entry per task (its last event in the batch, as `record` keeps it)."""
        for bucket_keys, argv in self.puts(events):
            self._s["index_put"](bucket_keys, argv, client=pipe)

    def puts(self, events: list[task_pb2.TaskEvent]) -> list[tuple[keys.IndexKeys, list[str | int]]]:
        """The keys and arguments of put_index (scripts.lua) for `events`: one pair per bucket
        touched, none when the index is off."""
        if not self.settings.enabled:
            return []
        by_bucket: dict[tuple[str, int], list[str | int]] = {}
        for e, timing in _latest(events):
            b = self.bucket(e.at_ms)
            argv = by_bucket.setdefault((namespace_of_event(e), b), [])
            argv += [e.task_id, e.at_ms, entry_of(e), _how(e, timing), *timing.argv(b)]
        oldest = int(time.time() * 1000) - self.retention_ms
        out = []
        for (ns, b), argv in by_bucket.items():
            # 0: the bucket started within the retention, so none of its entries is too old.
            head: list[str | int] = [
                oldest if b < oldest else 0,
                self.settings.max,
                b + self.bucket_ms + self.retention_ms,
            ]
            out.append((keys.index_keys(ns, b), [*head, *argv]))
        return out

    def window(self, since_ms: int, until_ms: int) -> tuple[int, int]:
        """The time range [oldest, newest] (inclusive) a listing covers: at most the retention."""
        now = int(time.time() * 1000)
        newest = (until_ms or now + CLOCK_SKEW_MS) - 1
        return max(since_ms, now - self.retention_ms), newest

    async def page(
        self,
        redis: Redis,
        namespace: str,
        filters: Filters,
        since_ms: int,
        until_ms: int,
        limit: int,
        cursor: str,
        truth: TruthReader,
    ) -> Page:
        oldest, newest = self.window(since_ms, until_ms)
        after = ""
        if cursor:
            newest, after = decode_cursor(cursor)
        page = Page()
        buckets = await self._existing(redis, namespace, oldest, newest)
        calls = 0
        while buckets and calls < MAX_CALLS:
            b = buckets[0]
            newest = min(newest, b + self.bucket_ms - 1)
            calls += 1
            argv = [newest, after, max(oldest, b), limit - len(page.tasks), SCAN_BUDGET, *filters.argv()]
            reply = await self._s["index_page"](keys.index_keys(namespace, b)[:2], argv)
            ended, last_at, last_id = int(reply[0]), int(float(reply[1])), _text(reply[2])
            ids = [_text(x) for x in reply[3::3]]
            tails = [_text(x) for x in reply[5::3]]
            for r, tail in zip(await truth(ids), tails, strict=True):
                if r.found and self.bucket(r.updated_ms) == b and filters.match(r):
                    r.ready_ms, r.started_ms = times_of(tail, b)
                    page.tasks.append(r)
            if ended:
                buckets.pop(0)
                newest, after = b - 1, ""
            else:
                newest, after = last_at, last_id
            if len(page.tasks) >= limit:
                break
        if buckets:
            page.cursor = encode_cursor(newest, after)
        return page

    async def _existing(self, redis: Redis, namespace: str, oldest: int, newest: int) -> list[int]:
        """The buckets of the window that hold entries, newest first (one round trip). A window
        that reaches into the future (an `until_ms` or a cursor far ahead) ends now: the buckets
        looked at are at most the retention's, however far the request reaches."""
        newest = min(newest, int(time.time() * 1000) + CLOCK_SKEW_MS)
        buckets = list(range(self.bucket(newest), oldest - self.bucket_ms, -self.bucket_ms))
        if not buckets:
            return []
        async with redis.pipeline(transaction=False) as pipe:
            for b in buckets:
                pipe.exists(keys.index_keys(namespace, b).order)
            found = await pipe.execute()
        return [b for b, n in zip(buckets, found, strict=True) if n]

    async def counts(self, redis: Redis, namespace: str, since_ms: int, until_ms: int) -> dict[str, dict[str, int]]:
        """Tasks by state name and by task name in the buckets the window touches (whole buckets:
        kept as counters by index_put), read in one round trip. A task that changed across a bucket
        boundary counts in both buckets."""
        oldest, newest = self.window(since_ms, until_ms)
        buckets = await self._existing(redis, namespace, oldest, newest)
        script = self._s["index_counts"]

        def build(pipe: Pipeline) -> None:
            for b in buckets:
                script([keys.index_keys(namespace, b).counts], [], client=pipe)

        replies = await run_pipeline(redis, build, self._s) if buckets else []
        by_state: dict[str, int] = {}
        by_name: dict[str, int] = {}
        for reply in replies:
            for k, v in zip(reply[::2], reply[1::2], strict=True):
                key = _text(k)
                if key.startswith("s"):
                    state = task_pb2.TaskState.Name(int(key[1:]))  # type: ignore[arg-type]
                    by_state[state] = by_state.get(state, 0) + int(v)
                else:
                    by_name[key[1:]] = by_name.get(key[1:], 0) + int(v)
        return {"state": by_state, "name": by_name}


def _latest(events: list[task_pb2.TaskEvent]) -> list[tuple[task_pb2.TaskEvent, Timing]]:
    """Per task, the event that sets its state last in this batch: a later event replaces an
    earlier one, but not a final one unless it reopens the task (the rule of `record`); with the
    ready and start times the chosen events set on the way (a task's whole story often comes in
    one batch: QUEUED, RUNNING and its end)."""
    chosen: dict[str, tuple[task_pb2.TaskEvent, Timing]] = {}
    for e in events:
        if e.progress_only:
            continue
        before = chosen.get(e.task_id)
        if before is None or e.reopen or not is_final(before[0].state):
            timing = before[1] if before else Timing()
            timing.follow(e)
            chosen[e.task_id] = (e, timing)
    return list(chosen.values())


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x
