"""Every Redis key the worker registry owns. Keys of one queue share the hash tag {queue}, so the
scripts in store.py touch one cluster slot.

    tt:w:{q}:ready       ZSET   task id -> score; lowest runs first (priority band, then arrival)
    tt:w:{q}:task        HASH   task id -> task value: priority band in BAND_DIGITS digits, then the
                                serialized tasktide.v1.Task
    tt:w:{q}:leases      ZSET   task id -> lease deadline (Unix ms)
    tt:w:{q}:tokens      HASH   task id -> fencing token of the current lease
    tt:w:{q}:deliveries  HASH   task id -> times delivered
    tt:w:{q}:cancel      HASH   task id -> grace seconds of a Cancel asked while the task was leased,
                                until its lease ends: a worker that missed the signal hears it at its
                                next heartbeat, and a task whose worker was lost is ended CANCELLED
                                rather than queued again (cancelled.py); or asked while its next
                                attempt was parked in :retrying, until the scheduler holds that
                                attempt and is handed the Cancel (outcomes.hand_retries)
    tt:w:{q}:fence       STRING counter for fencing tokens and arrival order
    tt:w:{q}:dead        ZSET   task id -> time it was dead-lettered (its task value stays in :task)
    tt:w:{q}:paused      STRING "1" while the queue is paused (nothing is dispatched from it)
    tt:w:{q}:retrying    HASH   task id -> serialized Task of its next attempt, until the scheduler has it
    tt:w:{q}:retry_at    ZSET   task id -> when it entered :retrying (the reaper hands over stragglers)
    tt:w:queues          SET    every queue with something in it (empty unused queues are removed
                                by the reaper's housekeeping)
    tt:w:workers         HASH   session id -> serialized WorkerInfo
    tt:w:notify          PUBSUB queue names that received work
    tt:w:cancel          PUBSUB "task id|grace seconds": stop this task wherever it runs
    tt:w:drain           PUBSUB session ids, space-separated: send these sessions a Drain wherever
                                they are connected
    tt:w:draining        SET    session ids a DrainWorker named, until their sessions end: a replica
                                that missed the message on tt:w:drain finds it when it next refreshes
                                the session's worker entry
    tt:w:resize          PUBSUB "session id=concurrency", space-separated: send these sessions a
                                Resize wherever they are connected
    tt:w:resizing        HASH   session id -> the concurrency a ResizeWorker asked of it, until its
                                session ends: a replica that missed the message on tt:w:resize sends
                                it when it next refreshes the session's worker entry

The score of a ready task is band * BAND_BASE + arrival (arrival from :fence; a task put back in
front of its band has arrival 0). Band 0 is priority 100, band 200 is priority -100. The scripts
(scripts.lua) read BAND_BASE and BAND_DIGITS as locals (`LUA_CONSTANTS`, see common/lua.py).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from tasktide.v1 import task_pb2
from tasktide_services.common.layout import PRIORITY_MAX, PRIORITY_MIN

QUEUES = "tt:w:queues"
WORKERS = "tt:w:workers"
NOTIFY = "tt:w:notify"
CANCEL = "tt:w:cancel"
DRAIN = "tt:w:drain"
DRAINING = "tt:w:draining"
RESIZE = "tt:w:resize"
RESIZING = "tt:w:resizing"

BAND_BASE = 2**40
BAND_DIGITS = 3  # bands run from 0 to PRIORITY_MAX - PRIORITY_MIN (200)
LUA_CONSTANTS = {"BAND_BASE": BAND_BASE, "BAND_DIGITS": BAND_DIGITS}
QUEUE_KEYS_KEPT = 4096  # queues whose keys are kept built (least recently used dropped first)


class QueueKeys(NamedTuple):
    """The keys of one queue: the KEYS of every script in scripts.lua, in this order."""

    ready: str
    task: str
    leases: str
    tokens: str
    deliveries: str
    cancel: str
    fence: str
    dead: str
    paused: str
    retrying: str
    retry_at: str


@functools.lru_cache(maxsize=QUEUE_KEYS_KEPT)
def queue_keys(q: str) -> QueueKeys:
    """A queue's keys; those of the queues in use are built once (every submission, dispatch and
    outcome names them)."""
    p = f"tt:w:{{{q}}}"
    return QueueKeys(*(f"{p}:{name}" for name in QueueKeys._fields))


def band(priority: int) -> int:
    """The band of a priority (PRIORITY_MIN..PRIORITY_MAX): 0 runs first."""
    return PRIORITY_MAX - priority


def score_band(score: float) -> int:
    """The band of a score in :ready."""
    return int(score) // BAND_BASE


def band_start(band: int) -> int:
    """The lowest score of a band in :ready."""
    return band * BAND_BASE


_BAND_PREFIX = {p: b"%0*d" % (BAND_DIGITS, band(p)) for p in range(PRIORITY_MIN, PRIORITY_MAX + 1)}


def task_value(task: task_pb2.Task) -> bytes:
    """The task value of a task in :task: its band in BAND_DIGITS digits, then the serialized Task.
    The scripts take tasks so (ARGV) and store them as they come."""
    priority = task.spec.priority
    prefix = _BAND_PREFIX.get(priority) or b"%0*d" % (BAND_DIGITS, band(priority))  # checked at admission
    return prefix + task.SerializeToString()


def task_of(value: bytes | str) -> task_pb2.Task:
    """The task of a task value in :task (the band prefix dropped)."""
    raw = value.encode() if isinstance(value, str) else value  # redis-py's types allow str; replies are bytes
    return task_pb2.Task.FromString(raw[BAND_DIGITS:])
