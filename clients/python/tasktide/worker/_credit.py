"""How many assignments a worker asks the registry to keep it supplied with.

The window is the concurrency plus a prefetch. A fixed prefetch (`--prefetch N`) stays N. The
default starts at three tasks per slot and follows the length of the tasks: enough for about
BUFFER_SECONDS of work per slot, between three and MAX_PER_SLOT per slot. Short tasks then travel
in larger batches (fewer messages and Redis round trips per task); long tasks keep a small window,
so tasks do not wait behind them in one worker while another is free.

The same average decides how long a finished task's outcome waits for others to share its message
(`linger`): while tasks are short, several finish within LINGER_SECONDS and travel together (one
message, one registry batch, one Redis pipeline for all of them); while they are long, nothing
would join it, so it leaves at once.
"""

from __future__ import annotations

BUFFER_SECONDS = 0.05
MIN_PER_SLOT = 3
MAX_PER_SLOT = 32
LINGER_SECONDS = 0.005
_WEIGHT = 0.05  # of each new duration in the moving average


class CreditWindow:
    def __init__(self, concurrency: int, prefetch: int = 0) -> None:
        self.concurrency = concurrency
        self.fixed = prefetch
        self.window = 0
        self.average: float | None = None  # seconds per task, moving average

    def target(self) -> int:
        if self.fixed:
            return self.concurrency + self.fixed
        per_slot = MIN_PER_SLOT
        if self.average is not None:
            per_slot = max(MIN_PER_SLOT, min(MAX_PER_SLOT, int(BUFFER_SECONDS / max(self.average, 1e-6))))
        return self.concurrency * (1 + per_slot)

    def open(self, in_hand: int = 0) -> int:
        """The credit of a new session, for a worker with `in_hand` assignments already (held, or
        with outcomes still to write, each of which returns its credit when written): what tops
        them up to the target. With more in hand than the target, the window starts at what is in
        hand and nothing is granted; outcomes then shrink it back, as in `returned`."""
        self.window = max(self.target(), in_hand)
        return self.window - in_hand

    def resize(self, concurrency: int) -> int:
        """The worker now runs `concurrency` at a time (a Resize): the credit to grant at once,
        which tops the window up to its new target when it grew. A smaller target grants nothing:
        outcomes then shrink the window, as in `returned`."""
        self.concurrency = concurrency
        grant = max(0, self.target() - self.window)
        self.window += grant
        return grant

    def observe(self, seconds: float) -> None:
        """A task ran for `seconds`."""
        self.average = seconds if self.average is None else self.average + _WEIGHT * (seconds - self.average)

    def returned(self, n: int) -> int:
        """`n` assignments are done (their outcomes are being sent): the credit to grant with them,
        which moves the window toward its target."""
        grant = max(0, n + self.target() - self.window)
        self.window += grant - n
        return grant

    def linger(self) -> float:
        """Seconds an outcome waits for more outcomes to join its batch (while other tasks run)."""
        if self.average is not None and self.average < LINGER_SECONDS / 2:
            return LINGER_SECONDS
        return 0.0
