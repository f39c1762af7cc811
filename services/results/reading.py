"""What the results service's waiting calls (Wait, Watch, Follow) share: how they read, how often
they look again, and how a result of another namespace's task is shown."""

from __future__ import annotations

from tasktide.v1 import task_pb2
from tasktide_services.common import tenancy
from tasktide_services.common.auth import current_caller
from tasktide_services.common.loop import backoff

WATCH_READ_BATCH = 500  # tasks read per round trip
# Events of one task that one read gives at most; a task that filled its share is read again at
# once (a finished task sends no notice that would wake its watcher for the rest).
WATCH_EVENTS_PER_READ = 500
# A watcher reads its tasks when a notice names them, and every WATCH_RESYNC seconds all of them
# (the safety net under pub/sub, for a notice lost while the channel was reconnecting): an idle
# watch on many ids costs Redis nothing in between.
WATCH_RESYNC = 30.0
# A waiter whose read failed (Redis away) reads again after this long, doubled per failure in a
# row up to the maximum; a Watch or Follow goes on, a Wait until its deadline.
FAILURE_PAUSE = 0.1
FAILURE_PAUSE_MAX = 1.0
WATCH_MESSAGE_EVENTS = 500  # events (or results) per streamed message, at most
WATCH_MESSAGE_BYTES = 1 << 20  # and about this many bytes (one larger item goes alone)


def own(results: list[task_pb2.TaskResult]) -> list[task_pb2.TaskResult]:
    """The results, with those of another namespace's tasks shown as unknown ids are."""
    caller = current_caller()
    if tenancy.acts_everywhere(caller):
        return results
    return [
        r if not r.found or tenancy.owns(caller, r.spec) else task_pb2.TaskResult(task_id=r.task_id) for r in results
    ]


def pause(failures: int) -> float:
    """Seconds before reading again after `failures` failed reads in a row."""
    return backoff(failures, FAILURE_PAUSE, FAILURE_PAUSE_MAX)
