"""A chord whose member fails, while the workers are killed under it: the members still run and
keep one result each, the failure reaches the chord's body (FAILED, never run) and the workflow."""

from __future__ import annotations

import time
from pathlib import Path

from tasktide import chord, group
from tasktide.v1 import task_pb2
from tests.faults.conftest import make_rig
from tests.tasks_app import echo, marked, marked_boom

MEMBERS = 40


def test_chord_member_failing(tmp_path: Path, queue_name: str) -> None:
    q = {"queue": queue_name}
    with make_rig(tmp_path, queue_name, n_workers=2) as rig:
        members = [marked.s(str(rig.markers), 0.05).set(**q) for _ in range(MEMBERS - 1)]
        members.insert(MEMBERS // 2, marked_boom.s(str(rig.markers)).set(**q))
        wf = chord(group(members), echo.s().set(**q)).apply_async(rig.client)
        time.sleep(0.5)
        rig.workers.kill(rig.workers.procs[0])
        rig.workers.spawn(1)
        ended = time.monotonic()
        member_ids = wf.task_ids[0]
        body = wf.task_ids[-1][0]
        failing = member_ids[MEMBERS // 2]
        expected = {failing: task_pb2.TASK_STATE_FAILED, body: task_pb2.TASK_STATE_FAILED}
        fig = rig.count(
            f"a chord of {MEMBERS} with a failing member, a worker SIGKILLed",
            [*member_ids, body],
            ended,
            expected=expected,
        )
        state = wf.state()
    assert (fig.lost, fig.recorded_twice, fig.run) == (0, 0, MEMBERS), "every member ran, the body never"
    assert state == "FAILED"
