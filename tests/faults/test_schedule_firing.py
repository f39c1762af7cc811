"""A scheduler replica SIGKILLed while it fires periodic schedules, then started again.

Two schedulers on one Redis (with two registries and two results services), several interval
schedules firing every second. To be sure the killed replica dies holding a claimed occurrence (in
`:firing`, its task maybe not submitted yet), the other replica is SIGSTOPped for a moment first: the
next new member of `:firing` is then the victim's claim, and the victim is SIGKILLed at once. The
survivor resumes; after the hand-over deadline (HANDOVER_MS) it submits the stranded occurrence again
under the occurrence's idempotency key. This is done once with each replica as the victim.

Checked, per schedule: no occurrence has two tasks; between two fired occurrences none is missing
beyond the catch-up rule (services/scheduler/schedules.py: the occurrence after a fired one is the
first that lies after the time of its claim, so occurrences are skipped only when firing ran late by a
whole interval); every fired task ran and kept one result.
"""

from __future__ import annotations

import math
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
import redis

from tasktide import Client
from tasktide.v1 import task_pb2
from tasktide_services.common.layout import is_final
from tasktide_services.scheduler import keys
from tasktide_services.scheduler.schedules import HANDOVER_MS, OCCURRENCE_HEADER, SCHEDULE_HEADER
from tests.faults.conftest import record
from tests.faults.figures import count, runs
from tests.faults.test_replicas import setup

SCHEDULES = 8
EVERY = 1.0


def _claim_by_victim(r: redis.Redis, timeout: float = 5.0) -> str:
    """The next member of :firing that was not there when called ("" if none came)."""
    before = set(r.zrange(keys.SCHEDULES_FIRING, 0, -1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in r.zrange(keys.SCHEDULES_FIRING, 0, -1):
            if m not in before:
                return str(m.decode())
    return ""


def _fired(client: Client, queue: str) -> list[task_pb2.TaskResult]:
    out: list[task_pb2.TaskResult] = []
    cursor = ""
    while True:
        page = client.list_tasks(queue=queue, limit=1000, cursor=cursor)
        out.extend(page.tasks)
        cursor = page.next_cursor
        if not cursor:
            return out


def _settled(client: Client, queue: str, markers: Path, timeout: float = 30.0) -> list[task_pb2.TaskResult]:
    """The tasks fired into `queue`, listed once all of them are final and every body that ran is
    among them. A listing is ordered by latest change: a task that changes while the listing walks
    moves ahead of it and is left out of that listing, so only a listing of settled tasks is whole."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = _fired(client, queue)
        listed = {t.task_id for t in tasks}
        if all(is_final(t.state) for t in tasks) and set(runs(markers)) <= listed:
            return tasks
        if time.monotonic() > deadline:
            return tasks
        time.sleep(0.5)


def _check_occurrences(tasks: list[task_pb2.TaskResult]) -> tuple[int, int, int]:
    """(occurrences with more than one task, occurrences missed beyond the catch-up rule,
    occurrences skipped by it)."""
    by_schedule: dict[str, dict[int, list[task_pb2.TaskResult]]] = defaultdict(lambda: defaultdict(list))
    for t in tasks:
        by_schedule[t.spec.headers[SCHEDULE_HEADER]][int(t.spec.headers[OCCURRENCE_HEADER])].append(t)
    twice = missed = skipped = 0
    every = round(EVERY * 1000)
    for occurrences in by_schedule.values():
        twice += sum(1 for ts in occurrences.values() if len(ts) > 1)
        fired = sorted(occurrences)
        for o, nxt in zip(fired, fired[1:], strict=False):
            created = min(t.created_ms for t in occurrences[o])  # the claim came before the submission
            allowed = o + every * max(math.floor((created - o) / every) + 1, 1)
            missed += max(0, (nxt - allowed) // every)
            skipped += (min(nxt, allowed) - o) // every - 1
    return twice, missed, skipped


# Two kill cycles, the 30 s hand-over of the stranded occurrences, then the count: past the suite's
# default per-test timeout on a loaded machine.
@pytest.mark.timeout(300)
def test_a_scheduler_replica_killed_while_firing_schedules(tmp_path: Path, queue_name: str) -> None:
    with setup(tmp_path) as s:
        s.replicas.start_all()
        workers = s.workers(queue_name)
        r = redis.Redis.from_url(s.redis_url)
        try:
            workers.spawn(2)
            with s.client() as client:
                start = time.time() + 1.0
                names = [f"{queue_name}-s{i}" for i in range(SCHEDULES)]
                for name in names:
                    args = [str(s.markers), 0.0]
                    client.put_schedule(name, "t.marked", args, every=EVERY, start=start, queue=queue_name)
                time.sleep(3.0)
                stranded = []
                for victim in (0, 1):
                    other = s.replicas.procs[("scheduler", 1 - victim)]
                    other.send_signal(signal.SIGSTOP)
                    try:
                        stranded.append(_claim_by_victim(r))
                        s.replicas.kill("scheduler", victim)
                    finally:
                        other.send_signal(signal.SIGCONT)
                    time.sleep(1.0)
                    s.replicas.start("scheduler", victim)
                    time.sleep(2.0)
                restarted = time.monotonic()
                for name in names:
                    client.pause_schedule(name)
                deadline = time.monotonic() + HANDOVER_MS / 1000 + 20
                while r.zcard(keys.SCHEDULES_FIRING) and time.monotonic() < deadline:
                    time.sleep(0.2)
                left = r.zcard(keys.SCHEDULES_FIRING)
                tasks = _settled(client, queue_name, s.markers)
                twice, missed, skipped = _check_occurrences(tasks)
                case = (
                    f"SIGKILL of a scheduler (of 2) while firing {SCHEDULES} schedules every {EVERY:g} s, "
                    f"restarted; twice, once each replica ({twice} occurrences fired twice, {missed} missed, "
                    f"{skipped} skipped by catch-up)"
                )
                fig = count(case, client, s.redis_url, [t.task_id for t in tasks], s.markers, restarted, timeout=30)
                print(fig.line(), f"; stranded claims: {stranded}; left in :firing: {left}")
                record(fig)
        finally:
            r.close()
            workers.close()
    assert all(stranded), f"a kill did not catch its replica holding a claim: {stranded}"
    assert left == 0, "a stranded occurrence was never handed over"
    assert (twice, missed) == (0, 0)
    assert (fig.lost, fig.recorded_twice, fig.run) == (0, 0, fig.submitted)
    assert fig.submitted >= SCHEDULES * 5
