"""Chords under faults: a member fails while the workers are killed under it (the members still run
and keep one result each, the failure reaches the chord's body, FAILED and never run, and the
workflow); a service is killed while the members finish (each body runs once, with every member's
result)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasktide import chord, group
from tasktide.v1 import task_pb2
from tests.faults.conftest import make_rig
from tests.tasks_app import echo, marked, marked_boom, marked_count

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


CHORDS, WIDTH = 8, 20


@pytest.mark.parametrize("service", ["scheduler", "registry"])
def test_a_service_killed_while_chords_finish(tmp_path: Path, queue_name: str, service: str) -> None:
    """The scheduler moves a chord on when the registry reports its members' ends (`Completed`),
    and submits its body under a key of the workflow: a report lost with either service, or made
    twice after a restart, must neither strand the body nor run it twice."""
    q = {"queue": queue_name}
    with make_rig(tmp_path, queue_name, n_workers=2) as rig:
        marks = str(rig.markers)
        wfs = [
            chord(
                group(marked.s(marks, 0.2).set(**q) for _ in range(WIDTH)), marked_count.s(marks).set(**q)
            ).apply_async(rig.client)
            for _ in range(CHORDS)
        ]
        time.sleep(1.0)
        rig.cluster.kill(service)
        time.sleep(1.0)
        rig.cluster.start(service)
        ended = time.monotonic()
        ids = [tid for wf in wfs for stage in wf.task_ids for tid in stage]
        fig = rig.count(
            f"SIGKILL of the {service} while {CHORDS} chords of {WIDTH} finish, restarted 1 s later", ids, ended
        )
        counted = [wf.get(timeout=30) for wf in wfs]
        bodies = {wf.task_ids[-1][0] for wf in wfs}
        runs = [m.name.split("-")[0] for m in rig.markers.iterdir()]
    rig.assert_held(fig)
    assert counted == [WIDTH] * CHORDS
    assert sorted(r for r in runs if r in bodies) == sorted(bodies), "a body ran twice, or never"
