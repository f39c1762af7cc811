"""Constants of the storage layout that more than one service, or Python and Lua, rely on.

Each constant is defined once, here or in the keys.py of the service that owns the data it shapes,
and reaches Lua as a local: a service's `LuaFile` (common/lua.py) names the constants its scripts
use, and the loader writes them as `local NAME = value` at the top of every script of that file.

    PRIORITY_MIN .. PRIORITY_MAX            the priorities a task may have (common/validate.py);
                                            worker/keys.py turns them into bands 0..200
    FIRST_FINAL_STATE .. LAST_FINAL_STATE   TaskState numbers of a final task (SUCCEEDED .. DEAD):
                                            results/scripts.lua refuses events after them; the
                                            scheduler and the results service ask `is_final`
    worker/keys.py BAND_BASE, BAND_DIGITS   the score of a ready task and the band prefix of a task
                                            value in the registry's queues (worker/scripts.lua)
    results/keys.py EVENTS_KEPT             how many events a task's log keeps (results/scripts.lua)
"""

from __future__ import annotations

from tasktide.v1 import task_pb2

PRIORITY_MIN, PRIORITY_MAX = -100, 100

FIRST_FINAL_STATE = task_pb2.TASK_STATE_SUCCEEDED
LAST_FINAL_STATE = task_pb2.TASK_STATE_DEAD
FINAL_STATES = frozenset(range(FIRST_FINAL_STATE, LAST_FINAL_STATE + 1))


def is_final(state: int) -> bool:
    """Whether a task in this state has its one result (nothing runs or changes it any more)."""
    return FIRST_FINAL_STATE <= state <= LAST_FINAL_STATE


# The headers that place a task in a workflow: set by the scheduler's Workflows service only (a
# caller's spec carrying one is refused, so a plain task cannot pose as a workflow's member).
WORKFLOW_HEADERS = ("tasktide-workflow", "tasktide-stage", "tasktide-member")
