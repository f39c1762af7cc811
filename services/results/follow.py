"""Results.Follow: one stream answering the final result of each task id its client names.

Two tasks share one stream: the reader takes the client's requests (ids to follow, ids to forget)
and changes what is followed; the answering loop reads the followed ids that a notice named (and
every WATCH_RESYNC seconds all of them, the safety net under pub/sub) and sends those that are
final. A result this process has just recorded as final is answered as it was written, not read
back (ResultsStore.ended_here). What the stream holds is bounded by `most`, the ids it may follow
at once: the followed set, the subscription's keys and the ids named and not read yet are each at
most that many, however many requests or notices arrive. A failing Redis read is logged and tried
again after a pause; it never ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import ResourceExhausted
from tasktide_services.common.layout import is_final
from tasktide_services.common.notify import Notifier, Subscription
from tasktide_services.results.reading import (
    WATCH_MESSAGE_BYTES,
    WATCH_MESSAGE_EVENTS,
    WATCH_READ_BATCH,
    WATCH_RESYNC,
    own,
    pause,
)
from tasktide_services.results.store import ResultsStore

# Sent in the headers of every Follow stream as it opens; every client reads it (its follower).
FOLLOW_HEADER = "tasktide-follow"

log = logging.getLogger("tasktide.results")


class _Followed:
    """The ids one stream follows, kept with its subscription, and how its reader ended."""

    def __init__(self, notifier: Notifier, most: int) -> None:
        self.notifier = notifier
        self.most = most
        self.ids: set[str] = set()
        self.sub: Subscription = notifier.subscribe(set(), finals=True)
        self.closed = False  # the client half-closed: no more requests
        self.failure: BaseException | None = None  # the request that ended the stream

    def apply(self, req: results_pb2.FollowRequest) -> None:
        forget = {validate.task_id(t) for t in req.forget}
        add = {validate.task_id(t) for t in req.task_ids}
        if forget:
            self.ids -= forget
            self.notifier.shrink(self.sub, forget)
        new = add - self.ids
        if len(self.ids) + len(new) > self.most:
            raise ResourceExhausted(
                f"a Follow stream follows at most {self.most} task ids at once; "
                f"{len(self.ids)} are followed and {len(new)} more were asked"
            )
        if new:
            self.ids |= new
            self.notifier.grow(self.sub, new)
            for t in new:  # read at once: a task final already is answered now
                self.sub.named(t)

    def answered(self, ids: set[str]) -> None:
        self.ids -= ids
        self.notifier.shrink(self.sub, ids)

    async def read_requests(self, requests: AsyncIterator[results_pb2.FollowRequest]) -> None:
        try:
            async for req in requests:
                self.apply(req)
            self.closed = True
        except Exception as exc:  # noqa: BLE001 - a bad request ends the stream with its status
            self.failure = exc
        finally:
            self.sub.poke()

    def close(self) -> None:
        self.notifier.unsubscribe(self.sub)


async def _finals(store: ResultsStore, ids: list[str]) -> list[task_pb2.TaskResult]:
    """The final results among `ids` (of the caller's namespace): those this process has just
    written as it holds them, the others read in round trips of WATCH_READ_BATCH."""
    here = store.ended_here(ids)
    out = own(list(here.values()))
    ids = [t for t in ids if t not in here]
    for i in range(0, len(ids), WATCH_READ_BATCH):
        got = own(await store.get(ids[i : i + WATCH_READ_BATCH]))
        out.extend(r for r in got if r.found and is_final(r.state))
    return [r for r in out if r.found]


def _messages(results: list[task_pb2.TaskResult]) -> list[results_pb2.FollowResponse]:
    """`results` in messages of at most WATCH_MESSAGE_EVENTS and about WATCH_MESSAGE_BYTES."""
    messages = [results_pb2.FollowResponse()]
    size = 0
    for r in results:
        n = r.ByteSize()
        last = messages[-1]
        if last.results and (len(last.results) >= WATCH_MESSAGE_EVENTS or size + n > WATCH_MESSAGE_BYTES):
            messages.append(results_pb2.FollowResponse())
            size = 0
        messages[-1].results.append(r)
        size += n
    return messages


async def follow(
    store: ResultsStore,
    notifier: Notifier,
    most: int,
    requests: AsyncIterator[results_pb2.FollowRequest],
    accept: Callable[[tuple[tuple[str, str], ...]], Awaitable[None]],
) -> AsyncIterator[results_pb2.FollowResponse]:
    """The Follow stream: final results of the ids `requests` name, at most `most` followed at once.
    `accept` sends the stream's initial metadata at once, FOLLOW_HEADER in it: the client knows the
    service took the stream before any result is final, and counts a later loss as a restart."""
    await accept(((FOLLOW_HEADER, "1"),))
    followed = _Followed(notifier, most)
    reader = asyncio.create_task(followed.read_requests(requests))
    loop = asyncio.get_running_loop()
    resync_at = loop.time() + WATCH_RESYNC
    to_check: set[str] = set()
    failures = 0
    try:
        while True:
            if followed.failure is not None:
                raise followed.failure
            to_check &= followed.ids
            if to_check:
                try:
                    finals = await _finals(store, sorted(to_check))
                except Exception:  # noqa: BLE001 - Redis away: the same ids are read again after a pause
                    failures += 1
                    log.warning(
                        "Follow: reading %d tasks failed (%d in a row)", len(to_check), failures, exc_info=failures == 1
                    )
                    await asyncio.sleep(pause(failures))
                    to_check |= followed.sub.take()
                    continue
                failures = 0
                to_check = set()
                finals = [r for r in finals if r.task_id in followed.ids]  # not forgotten while reading
                if finals:
                    followed.answered({r.task_id for r in finals})
                    for message in _messages(finals):
                        yield message
            if followed.closed and not followed.ids:
                return
            woken = await followed.sub.next_batch(max(resync_at - loop.time(), 0.0))
            if woken is not None:
                to_check = woken
            else:  # the safety net under pub/sub: a notice lost while the channel was down
                to_check = set(followed.ids)
                resync_at = loop.time() + WATCH_RESYNC
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        followed.close()
