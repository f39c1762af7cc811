"""What the worker has to write on its session, in order, waiting for the session's writer.

It stays bounded while the session cannot be written (the registry is down or unreachable, or the
stream is held up by flow control), whatever the tasks do meanwhile:

- Progress is superseded by the next report of the same attempt, so only the latest report of each
  attempt waits: the outbox holds one place for it, taken at its first report, and the report sent
  is the latest one when that place's turn comes. A task reporting in a loop adds nothing more.
  Reports come from the loop and from task threads alike.
- Heartbeats: one waits at most, and it is built when it is written, from the leases held then.
- Outcomes are never dropped or merged: there is at most one per assignment in hand, and the
  registry sends assignments only against credit, so they are bounded by the credit window.
  `outcomes` counts those waiting, which are still in hand when a new session opens its credit.
- Other messages (a drain's release, the writer's end) are one each.

So the entries waiting are at most: the attempts that reported progress, plus the outcomes in hand,
plus a heartbeat and a release.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from tasktide.v1 import task_pb2, worker_pb2

Item = worker_pb2.WorkerMessage | task_pb2.Outcome | None  # None: the writer's end
_Attempt = tuple[str, int]  # task id, lease token: where the latest report of an attempt waits


class _HeartbeatDue:
    """The place of the heartbeat waiting, if any."""


_HEARTBEAT = _HeartbeatDue()
_Entry = worker_pb2.WorkerMessage | task_pb2.Outcome | _Attempt | _HeartbeatDue | None


class Outbox:
    def __init__(self, heartbeat: Callable[[], worker_pb2.Heartbeat | None]) -> None:
        self._heartbeat = heartbeat  # the heartbeat of the leases held now (None: nothing held)
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._lock = threading.Lock()  # guards _latest (task threads report progress)
        self._latest: dict[_Attempt, worker_pb2.ProgressReport] = {}
        self._heartbeat_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.outcomes = 0  # outcomes waiting

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the writer runs on (progress from other threads is handed to it)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def __len__(self) -> int:
        """Entries waiting (the latest progress of an attempt is one entry, however many reports)."""
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    def put(self, item: Item) -> None:
        """On the loop: an outcome or a message, written in turn."""
        if isinstance(item, task_pb2.Outcome):
            self.outcomes += 1
        self._queue.put_nowait(item)

    def heartbeat(self) -> None:
        """On the loop: a heartbeat is due (nothing more if one is already waiting)."""
        if not self._heartbeat_due:
            self._heartbeat_due = True
            self._queue.put_nowait(_HEARTBEAT)

    def progress(self, report: worker_pb2.ProgressReport) -> None:
        """From any thread: the latest progress of an attempt, replacing the one waiting, if any."""
        key = (report.lease.task_id, report.lease.lease_token)
        with self._lock:
            first = key not in self._latest
            self._latest[key] = report
        if not first:
            return
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._queue.put_nowait(key)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, key)

    async def get(self) -> Item:
        """The next item to write (waits for one)."""
        while True:
            found, item = self._resolve(await self._queue.get())
            if found:
                return item

    def get_nowait(self) -> Item:
        """The next item to write; raises asyncio.QueueEmpty when there is none."""
        while True:
            found, item = self._resolve(self._queue.get_nowait())
            if found:
                return item

    def _resolve(self, entry: _Entry) -> tuple[bool, Item]:
        if isinstance(entry, task_pb2.Outcome):
            self.outcomes -= 1
            return True, entry
        if isinstance(entry, _HeartbeatDue):
            self._heartbeat_due = False
            hb = self._heartbeat()
            return hb is not None, None if hb is None else worker_pb2.WorkerMessage(heartbeat=hb)
        if isinstance(entry, tuple):
            with self._lock:
                report = self._latest.pop(entry, None)
            return report is not None, None if report is None else worker_pb2.WorkerMessage(progress=report)
        return True, entry
