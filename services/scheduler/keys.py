"""Every Redis key the scheduler owns.

tt:s:task:{id}        STRING  serialized tasktide.v1.Task (the task record); no expiry while the
                              task waits in the delayed set, then it expires with the results
tt:s:idem:{key}       STRING  task id submitted under an idempotency key; "?" + task id (store.PENDING)
                              while that task is being written (expires after store.CLAIM_MS)
tt:s:rate:{name}      STRING  the next free slot (Unix ms) under the task name's rate limit
tt:s:delayed          ZSET    task id -> Unix ms when it may run (countdown, ETA, retry backoff)
tt:s:{tt:s:delayed}:moving
                      ZSET    task id -> deadline; being handed to the registry: claimed from
                              :delayed, or a runnable task submitted under an idempotency key
                              (writing.py, PeerWriter); due again after its deadline

The two sets of delayed tasks (`DelayedKeys`) are the KEYS of one script, so they share a slot: the
hash tag of :moving is the whole name of the delayed set, which has no tag (it keeps the name it
has always had, so tasks waiting in it stay where they are).

Periodic schedules (schedule_store.py, `ScheduleKeys`), all under the hash tag {sched}:
tt:s:{sched}:def:{id} HASH    def = serialized Schedule (its definition only), rev (bumped by each
                              change of definition), paused (0|1), created, last_run, last_task, runs
tt:s:{sched}:all      SET     every schedule id
tt:s:{sched}:due      ZSET    schedule id -> its next occurrence, Unix ms (absent while paused or ended)
tt:s:{sched}:firing   ZSET    "id|occurrence ms" (`firing`) -> hand-over deadline: claimed, task not
                              yet submitted

Workflows (workflows.py, workflow_store.py):
tt:s:wf:{id}          HASH    stages = the number of stages,
                              stage:{n} = serialized Stage n (its task specs and ids), read when it
                              is submitted,
                              stage = the stage running, state = running (WORKFLOW_RUNNING) |
                              succeeded | failed,
                              size:{n}, left:{n} = of a group stage: its members, and those not
                              finished yet,
                              r:{stage}:{member} = a finished member's result (JSON),
                              tp:{stage}:{member} = its traceparent (for the callback's links; the
                              first workflows.LINKS_MAX members only);
                              no expiry while running; once ended it expires with the results.
                              (Workflows written before `stages` existed keep every stage in one
                              field, spec = serialized SubmitWorkflowResponse; they are still read.)

The scripts (scripts.lua) read LUA_CONSTANTS as locals (see common/lua.py).
"""

from __future__ import annotations

from typing import NamedTuple

DELAYED = "tt:s:delayed"
MOVING = "tt:s:{tt:s:delayed}:moving"
SCHEDULES = "tt:s:{sched}:all"
SCHEDULES_DUE = "tt:s:{sched}:due"
SCHEDULES_FIRING = "tt:s:{sched}:firing"
FIRING_SEPARATOR = "|"
WORKFLOW_RUNNING = "running"
LUA_CONSTANTS = {"FIRING_SEPARATOR": FIRING_SEPARATOR, "WORKFLOW_RUNNING": WORKFLOW_RUNNING}


class DelayedKeys(NamedTuple):
    """The delayed set and the tasks being moved out of it: the KEYS of claim_due."""

    delayed: str
    moving: str


DELAYED_KEYS = DelayedKeys(DELAYED, MOVING)


class ScheduleKeys(NamedTuple):
    """The keys of one schedule and the sets of every schedule (a script takes the ones it names)."""

    definition: str
    ids: str
    due: str
    firing: str


def schedule_keys(schedule_id: str) -> ScheduleKeys:
    return ScheduleKeys(schedule(schedule_id), SCHEDULES, SCHEDULES_DUE, SCHEDULES_FIRING)


def schedule(schedule_id: str) -> str:
    return f"tt:s:{{sched}}:def:{schedule_id}"


def firing(schedule_id: str, occurrence: int) -> str:
    """A member of :firing (schedule_claim writes it in Lua the same way)."""
    return f"{schedule_id}{FIRING_SEPARATOR}{occurrence}"


def fired(member: str) -> tuple[str, int]:
    """The schedule id and occurrence of a member of :firing."""
    schedule_id, _, occurrence = member.rpartition(FIRING_SEPARATOR)
    return schedule_id, int(occurrence)


def task(task_id: str) -> str:
    return f"tt:s:task:{task_id}"


def idem(key: str) -> str:
    return f"tt:s:idem:{key}"


def rate(name: str) -> str:
    return f"tt:s:rate:{name}"


def workflow(workflow_id: str) -> str:
    return f"tt:s:wf:{{{workflow_id}}}"
