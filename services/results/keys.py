"""Every Redis key the results service owns. Keys of one task share the hash tag {id}.

    tt:r:{id}:r       STRING  the task's result: "state,count,submitted,spec length:" (decimal
                              numbers; count = events ever appended to :ev, submitted = Unix ms,
                              empty until known) then the serialized TaskSpec submitted, then the
                              latest event that set the state (serialized TaskEvent without its
                              task id: name, attempt, worker, time, result, error); one value, so
                              that a finished task costs one small key for the result expiry.
                              A folded timeline (folded.py) adds ",started" to the header (ms
                              after submitted) and has no :ev
    tt:r:{id}:ev      LIST    the task's last EVENTS_KEPT events, serialized TaskEvents without
                              their task id (nor the spec), oldest first; an event's cursor is its
                              number (1 = the first event)
    tt:r:{id}:st      HASH    what a previous version kept instead of :r (s, e, p, t0, c): read by
                              `record` when a task has no :r yet, never written; gone within the
                              result expiry after an upgrade
    tt:r:events       PUBSUB  comma-separated task ids that have new events, then ORIGIN_MARK and
                              the recording process's own mark (its followers hear of its finals
                              from it at once, not from the channel: store.py, common/notify.py)
    tt:r:layout       STRING  Unix ms when this Redis first served results kept as :r (0: it held
                              no data then, so no :st can exist); readers look for :st until the
                              result expiry has passed since then (store.py)
Once the task is final, :r expires after the result expiry and :ev after the timeline expiry
(settings: TASKTIDE_RESULT_EXPIRES, TASKTIDE_TIMELINE_EXPIRES).

The visibility index (what ListTasks reads), per namespace NS and time bucket B (the start of the
bucket, Unix ms; settings.IndexSettings): the tasks whose latest change fell in the bucket.
    tt:r:ix:{NS|B}:z  ZSET    task id -> time of its latest change (Unix ms)
    tt:r:ix:{NS|B}:h  HASH    task id -> its state, name, queue, worker and error type (what the
                              filters match), then when its latest attempt became runnable and
                              when it started (ms from B; empty when not known), joined with the
                              unit separator (chr(31))
                              and the field '' (no task id is empty) with INDEX_WIDE_BYTES dots,
                              written when the bucket is created: a value longer than Redis's
                              hash-max-ziplist-value (hash-max-listpack-value; 64 by default)
                              makes the hash a hash table at once, where Redis would keep a compact
                              one, scanned on every write, until it held 512 entries
    tt:r:ix:{NS|B}:c  HASH    s<state> and n<task name> -> entries of the bucket with it
The keys of a bucket expire at the bucket's end plus the retention. `record` can put a task's
entry in the same call (KEYS: the task's, then the bucket's) on one Redis server (store.py). A task that changes in a
later bucket has an entry there too; the listing keeps the entry of the bucket of the task's
latest change (read from its state hash) and skips the other.

The scripts (scripts.lua) read LUA_CONSTANTS as locals (see common/lua.py): the range of final
states (common/layout.py), the QUEUED state, EVENTS_KEPT and INDEX_WIDE_BYTES.
"""

from __future__ import annotations

from typing import NamedTuple

from tasktide.v1 import task_pb2
from tasktide_services.common.layout import FIRST_FINAL_STATE, LAST_FINAL_STATE

EVENTS = "tt:r:events"
ORIGIN_MARK = "~"  # no task id starts so: a reader that does not know the mark finds no such task
LAYOUT = "tt:r:layout"

EVENTS_KEPT = 1000
INDEX_WIDE_BYTES = 256
LUA_CONSTANTS = {
    "FIRST_FINAL_STATE": FIRST_FINAL_STATE,
    "LAST_FINAL_STATE": LAST_FINAL_STATE,
    "QUEUED": task_pb2.TASK_STATE_QUEUED,
    "EVENTS_KEPT": EVENTS_KEPT,
    "INDEX_WIDE_BYTES": INDEX_WIDE_BYTES,
}


class TaskKeys(NamedTuple):
    """The keys of one task: the KEYS of `record` and `events_after` in scripts.lua, in this order."""

    result: str
    events: str
    legacy: str


def task_keys(task_id: str) -> TaskKeys:
    p = f"tt:r:{{{task_id}}}"
    return TaskKeys(f"{p}:r", f"{p}:ev", f"{p}:st")


INDEX_SEP = "\x1f"


class IndexKeys(NamedTuple):
    """The keys of one index bucket: the KEYS of the index_* scripts, in this order."""

    order: str
    entries: str
    counts: str


def index_keys(namespace: str, bucket_ms: int) -> IndexKeys:
    p = f"tt:r:ix:{{{namespace}|{bucket_ms}}}"
    return IndexKeys(f"{p}:z", f"{p}:h", f"{p}:c")
