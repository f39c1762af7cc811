"""What a loop step claimed in Redis and could not hand back when it failed.

The delayed pump (pump.py) and the schedule loop (schedules.py) claim work in a sorted set of
hand-over deadlines (:moving, :firing) before they act on it. The deadline is long (30 s), so that
a slow step is not overtaken by another replica. A step that fails after its claim brings what it
claimed forward (due again in RETRY_IN_DOUBT_MS) before its error ends it. When Redis cannot take
even that (it went away mid-step), the members are owed: the loop's next step brings them forward
before it claims anything, so a Redis that was away for a moment delays them by about a second, not
by the deadline. A claim whose answer was lost (the connection broke: Redis may have applied it)
gives no members to bring forward, only its deadline: every member of the claim holds that exact
score, so the next step looks them up (`lost`). A member another replica claimed in the same
millisecond comes along; handing a task or an occurrence over twice is safe (the registry skips a
task it holds; an occurrence's idempotency key answers with its task). A step that cannot settle
what is owed fails before it claims more, so at most one step's claim is ever owed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tasktide_services.scheduler.writing import RETRY_IN_DOUBT_MS

log = logging.getLogger("tasktide.scheduler")

SHOWN = 10  # members named in the log of a failed step

# Moves these members of the claim's set to now + in_ms (only those still there).
BringForward = Callable[[list[str], int], Awaitable[None]]
# The members of the claim's set whose score is this hand-over deadline.
HeldAt = Callable[[int], Awaitable[list[str]]]


class Owed:
    """The members one loop owes to its set, and the deadline of a claim whose answer was lost (in
    memory: at most one step's claim)."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.deadlines: set[int] = set()

    def lost(self, deadline: int) -> None:
        """A step's claim with this hand-over deadline may have been applied unanswered."""
        self.deadlines.add(deadline)

    async def settle(self, bring: BringForward, held_at: HeldAt) -> None:
        """Brings the owed members forward (due now), with those of a claim whose answer was
        lost; raises when Redis cannot take it, and they stay owed."""
        for deadline in sorted(self.deadlines):
            self.members.update(await held_at(deadline))
            self.deadlines.discard(deadline)
        if self.members:
            await bring(sorted(self.members), 0)
            self.members.clear()

    async def bring_back(self, bring: BringForward, members: list[str]) -> None:
        """A failed step's claim, due again in RETRY_IN_DOUBT_MS; owed when that fails too. Logged
        with the first members, so that a task that waits can be traced to the failure."""
        if not members:
            return
        shown = ", ".join(members[:SHOWN]) + (", ..." if len(members) > SHOWN else "")
        try:
            await bring(members, RETRY_IN_DOUBT_MS)
        except Exception:  # noqa: BLE001 - the step's own error is the one reported
            log.warning("a failed step claimed %d (%s); owed to the next step", len(members), shown)
            self.members.update(members)
            return
        log.warning("a failed step claimed %d (%s); due again in %d ms", len(members), shown, RETRY_IN_DOUBT_MS)
