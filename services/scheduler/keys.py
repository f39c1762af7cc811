"""Every Redis key the scheduler owns.

tt:s:task:{id}        STRING  serialized tasktide.v1.Task (the task record); expires with results
tt:s:idem:{key}       STRING  task id submitted under an idempotency key
tt:s:delayed          ZSET    task id -> Unix ms when it may run (countdown, ETA, retry backoff)
tt:s:moving           ZSET    task id -> deadline; claimed from :delayed, being handed to the registry

Periodic schedules (schedule_store.py), all under the hash tag {sched}:
tt:s:{sched}:def:{id} HASH    def = serialized Schedule (its definition only), rev (bumped by each
                              change of definition), paused (0|1), created, last_run, last_task, runs
tt:s:{sched}:all      SET     every schedule id
tt:s:{sched}:due      ZSET    schedule id -> its next occurrence, Unix ms (absent while paused or ended)
tt:s:{sched}:firing   ZSET    "id|occurrence ms" -> hand-over deadline: claimed, task not yet submitted
"""

from __future__ import annotations

DELAYED = "tt:s:delayed"
MOVING = "tt:s:moving"
SCHEDULES = "tt:s:{sched}:all"
SCHEDULES_DUE = "tt:s:{sched}:due"
SCHEDULES_FIRING = "tt:s:{sched}:firing"


def schedule(schedule_id: str) -> str:
    return f"tt:s:{{sched}}:def:{schedule_id}"


def task(task_id: str) -> str:
    return f"tt:s:task:{task_id}"


def idem(key: str) -> str:
    return f"tt:s:idem:{key}"


def rate(name: str) -> str:
    return f"tt:s:rate:{name}"


# Workflows (workflows.py):
#     tt:s:wf:{id}          HASH  spec = serialized SubmitWorkflowResponse (stages with task ids),
#                                 stage = the stage running, state = running|succeeded|failed,
#                                 left:{stage} = group members of that stage not finished yet,
#                                 r:{stage}:{member} = a finished member's result (JSON),
#                                 tp:{stage}:{member} = its traceparent (for the callback's links)
# A workflow's keys expire with the results.


def workflow(workflow_id: str) -> str:
    return f"tt:s:wf:{{{workflow_id}}}"
