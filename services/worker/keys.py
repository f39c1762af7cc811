"""Every Redis key the worker registry owns. Keys of one queue share the hash tag {queue}, so the
scripts in store.py touch one cluster slot.

    tt:w:{q}:ready       ZSET   task id -> score; lowest runs first (priority band, then arrival)
    tt:w:{q}:task        HASH   task id -> 3-digit priority band + serialized tasktide.v1.Task
    tt:w:{q}:leases      ZSET   task id -> lease deadline (Unix ms)
    tt:w:{q}:tokens      HASH   task id -> fencing token of the current lease
    tt:w:{q}:deliveries  HASH   task id -> times delivered
    tt:w:{q}:fence       STRING counter for fencing tokens and arrival order
    tt:w:{q}:dead        ZSET   task id -> time it was dead-lettered (its task bytes stay in :task)
    tt:w:{q}:paused      STRING "1" while the queue is paused (nothing is dispatched from it)
    tt:w:{q}:retrying    HASH   task id -> serialized Task of its next attempt, until the scheduler has it
    tt:w:{q}:retry_at    ZSET   task id -> when it entered :retrying (the reaper hands over stragglers)
    tt:w:queues          SET    every queue name seen
    tt:w:workers         HASH   session id -> serialized WorkerInfo
    tt:w:notify          PUBSUB queue names that received work
    tt:w:cancel          PUBSUB "task id|grace seconds": stop this task wherever it runs
"""

from __future__ import annotations

QUEUES = "tt:w:queues"
WORKERS = "tt:w:workers"
NOTIFY = "tt:w:notify"
CANCEL = "tt:w:cancel"

# The score of a ready task: band * 2**40 + arrival. Band 0 is priority 100, band 200 is -100.
BAND_SHIFT = 2**40


def band(priority: int) -> int:
    return 100 - priority


def queue_keys(q: str) -> list[str]:
    """KEYS of every queue script, in this order."""
    p = f"tt:w:{{{q}}}"
    return [
        f"{p}:ready",
        f"{p}:task",
        f"{p}:leases",
        f"{p}:tokens",
        f"{p}:deliveries",
        f"{p}:fence",
        f"{p}:dead",
        f"{p}:paused",
        f"{p}:retrying",
        f"{p}:retry_at",
    ]
