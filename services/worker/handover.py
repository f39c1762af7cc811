"""Handing submitted tasks straight to an idle worker of this process.

When the scheduler and the registry share a process (and a Redis connection), a submission's
pipeline can enqueue its runnable tasks and, for a queue that a local session has credit for, lease
them in the same round trip (the registry's own `enqueue_dispatch` script, on the queue's keys: a
task that the queue hands out at once is leased without entering the ready set). The leases go
to that session at once: no pub/sub wake-up, no second round trip. Whatever is not leased that
way is announced as usual, so other sessions and replicas still see it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from redis.asyncio.client import Pipeline

from tasktide.v1 import task_pb2
from tasktide_services.common.events import now_ms
from tasktide_services.worker.session import expired_of
from tasktide_services.worker.store import leased

log = logging.getLogger("tasktide.registry")

if TYPE_CHECKING:
    from tasktide_services.worker.service import RegistryService
    from tasktide_services.worker.session_state import Session


class Handover:
    """One submission's runnable tasks: `build` onto its pipeline, then `finish` with the replies
    (or `abandon` if the pipeline failed)."""

    def __init__(self, registry: RegistryService, tasks: list[task_pb2.Task]) -> None:
        self.registry = registry
        self.tasks = tasks
        self.reserved: dict[str, tuple[Session, int]] = {}
        for q, n in Counter(t.spec.queue for t in tasks).items():
            session = registry.reserve(q, n)
            if session is not None:
                self.reserved[q] = (session, n)
        self._at: dict[str, int] = {}
        self._deadline_ms = 0

    def build(self, pipe: Pipeline) -> None:
        store = self.registry.store
        store.build_enqueue(pipe, [t for t in self.tasks if t.spec.queue not in self.reserved])
        now, lease_ms = now_ms(), self.registry.loops.lease_ms
        self._deadline_ms = now + lease_ms
        for q, (_, n) in self.reserved.items():
            self._at[q] = len(pipe.command_stack) + 1  # after the SADD
            store.build_enqueue_dispatch(pipe, q, [t for t in self.tasks if t.spec.queue == q], now, lease_ms, n)

    def finish_now(self, replies: list[Any]) -> bool:
        """`finish` without awaiting anything, when that is all it would do (the usual case: every
        session is still there and no task has expired); False, with nothing done, otherwise."""
        now, sessions = now_ms(), self.registry.sessions
        try:
            parts = [(s, n, leased(replies[self._at[q]], self._deadline_ms)) for q, (s, n) in self.reserved.items()]
        except Exception:  # noqa: BLE001 - left to `finish`, which logs it
            return False
        if any(s.id not in sessions or expired_of(got, now) for s, _, got in parts):
            return False
        for session, n, got in parts:
            try:
                self.registry.give(session, n, got)
            except Exception:  # noqa: BLE001 - as in `finish`
                log.exception("handing tasks to session %s failed", session.id)
                session.grant(n)
        return True

    async def finish(self, replies: list[Any]) -> None:
        """The tasks are accepted whatever happens here: a lease that cannot be handed over expires
        and its task runs on another delivery."""
        for q, (session, n) in self.reserved.items():
            try:
                await self.registry.hand_over(session, n, leased(replies[self._at[q]], self._deadline_ms))
            except Exception:  # noqa: BLE001 - logged; the submission itself succeeded
                log.exception("handing tasks of queue %s to session %s failed", q, session.id)
                session.grant(n)

    def abandon(self) -> None:
        """The pipeline failed: the credit taken is given back."""
        for session, n in self.reserved.values():
            session.grant(n)
