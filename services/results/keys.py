"""Every Redis key the results service owns. Keys of one task share the hash tag {id}.

    tt:r:{id}:st      HASH    s state, e the latest event that set it (serialized TaskEvent:
                              name, attempt, worker, time, result, error),
                              p the serialized TaskSpec submitted (from the first event),
                              t0 when it was submitted (Unix ms),
                              c number of events ever appended to :ev
    tt:r:{id}:ev      LIST    the task's last 1000 events, serialized TaskEvents, oldest first;
                              an event's cursor is its number (1 = the first event)
    tt:r:events       PUBSUB  comma-separated task ids that have new events
Both keys of a task expire after the result expiry.
"""

from __future__ import annotations

EVENTS = "tt:r:events"


def state(task_id: str) -> str:
    return f"tt:r:{{{task_id}}}:st"


def events(task_id: str) -> str:
    return f"tt:r:{{{task_id}}}:ev"
