"""Counting what a fault did to a load of tasks, and the table of figures the suite reports.

- submitted: tasks the producer had confirmed (it retries a refused submission with the same
  idempotency key, so a retry never makes a second task)
- run: tasks whose body ran at least once (a marker file per run, written by the task)
- lost: confirmed tasks that did not reach their expected final state before the case's deadline
- run twice: tasks whose body ran more than once (at-least-once: allowed, counted)
- recorded twice: tasks with more than one final event in their event log (must be 0)
- recover s: seconds from the end of the fault until every confirmed task was final
- phantoms (in the line, not the table): lost tasks no service knows, the ids of submissions whose
  idempotency key was claimed but whose task was never written
- unconfirmed (in the line, not the table): tasks whose body ran but whose id the producer never
  got: a submission admitted a second time under its key, as a task of its own
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tasktide import Client, NotFound
from tasktide.v1 import task_pb2
from tasktide_services.common.layout import is_final
from tasktide_services.results.keys import task_keys


@dataclass
class Figures:
    case: str
    submitted: int
    run: int
    lost: int
    run_twice: int
    recorded_twice: int
    recover_s: float
    lost_detail: str = ""  # the states the lost tasks were left in, and why the first one waits
    phantoms: int = 0  # lost tasks that no service knows: confirmed ids of tasks never written
    first_lost: str = ""  # the id of the first lost task, for `Rig.assert_held`'s trace
    unconfirmed: int = 0  # tasks run whose ids were never confirmed (a second task for one key)

    def line(self) -> str:
        return (
            f"{self.case}: submitted {self.submitted}, run {self.run}, lost {self.lost}, "
            f"run more than once {self.run_twice}, recorded more than once {self.recorded_twice}, "
            f"recovered in {self.recover_s:.1f} s, run unconfirmed {self.unconfirmed}"
            + (f"; lost: {self.lost_detail}" if self.lost_detail else "")
        )


FIGURES = "fault_figures"  # the key of a case's figures among its test report's user_properties

HEADER = "| case | submitted | run | lost | bodies run >1 | results recorded >1 | time to recover (s) |"


def table(rows: Sequence[Figures]) -> str:
    lines = [HEADER, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = (r.case, r.submitted, r.run, r.lost, r.run_twice, r.recorded_twice, f"{r.recover_s:.1f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def wait_final(client: Client, ids: Sequence[str], timeout: float) -> dict[str, int]:
    """The state of every task once all are final, or as they stand at the deadline. A refused
    call (a service restarting) is tried again."""
    states: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        try:
            for i in range(0, len(pending), 500):
                for r in client.fetch(pending[i : i + 500]):
                    states[r.task_id] = r.state
        except Exception:  # noqa: BLE001 - the results service may be restarting
            time.sleep(0.2)
            continue
        pending = [t for t in pending if not is_final(states.get(t, 0))]
        if pending:
            time.sleep(0.1)
    return states


def final_counts(r: Any, ids: Sequence[str]) -> dict[str, int]:
    """Per task, how many final events its event log holds (read from the results service's keys
    through `r`, a redis-py client of one Redis or of a cluster)."""
    pipe = r.pipeline(transaction=False)
    for t in ids:
        pipe.lrange(task_keys(t).events, 0, -1)
    counts: dict[str, int] = {}
    for t, raw in zip(ids, pipe.execute(), strict=True):
        events = [task_pb2.TaskEvent.FromString(b) for b in raw]
        counts[t] = sum(1 for e in events if not e.progress_only and is_final(e.state))
    return counts


def finals_recorded(redis_url: str, ids: Sequence[str]) -> dict[str, int]:
    r = redis.Redis.from_url(redis_url)
    try:
        return final_counts(r, ids)
    finally:
        r.close()


def runs(marker_dir: Path) -> Counter[str]:
    """Per task id, how many times its body started (marker files TASKID-PID-NS)."""
    return Counter(p.name.split("-", 1)[0] for p in marker_dir.iterdir())


def count(
    case: str,
    client: Client,
    redis_url: str,
    ids: Sequence[str],
    marker_dir: Path,
    fault_ended: float,
    timeout: float = 20.0,
    expected: Mapping[str, int] | None = None,
    finals: Callable[[Sequence[str]], dict[str, int]] | None = None,
) -> Figures:
    """The figures of a case; a task is lost unless it ends in its `expected` state (SUCCEEDED
    for a task not named there). `finals` counts final events (default: read at `redis_url`)."""
    want = expected or {}
    states = wait_final(client, ids, timeout)
    settled = time.monotonic()
    started = runs(marker_dir)
    recorded = finals(ids) if finals else finals_recorded(redis_url, ids)
    lost = [t for t in ids if states.get(t) != want.get(t, task_pb2.TASK_STATE_SUCCEEDED)]
    return Figures(
        case=case,
        submitted=len(ids),
        run=sum(1 for t in ids if started[t]),
        lost=len(lost),
        run_twice=sum(1 for t in ids if started[t] > 1),
        recorded_twice=sum(1 for t in ids if recorded.get(t, 0) > 1),
        recover_s=max(0.0, settled - fault_ended),
        lost_detail=_why(client, states, lost),
        first_lost=lost[0] if lost else "",
        phantoms=sum(1 for t in lost if _unknown(client, t)),
        unconfirmed=len(set(started) - set(ids)),
    )


def _unknown(client: Client, task_id: str) -> bool:
    try:
        client.get_task(task_id)
    except NotFound:
        return True
    return False


def _why(client: Client, states: dict[str, int], lost: Sequence[str]) -> str:
    if not lost:
        return ""
    by_state = Counter(task_pb2.TaskState.Name(states.get(t, 0)) for t in lost)
    try:
        first = str(client.explain(lost[0]))
    except Exception as exc:  # noqa: BLE001 - a description only
        first = str(exc)
    return f"{dict(by_state)}; {lost[0]}: {first}"


def trace(redis_url: str, logs: Path, task_id: str) -> str:
    """Where a lost task is in Redis (every key that holds it: in its name, as a member or a
    field) and the lines of the services' and workers' logs that name it: what a failed case
    leaves for its reader, its folders being gone after the run."""
    out = [f"task {task_id}:"]
    with redis.Redis.from_url(redis_url) as r:
        for key in r.scan_iter(count=1000):
            kind = r.type(key).decode()
            held = task_id.encode() in key or (
                (kind == "zset" and r.zscore(key, task_id) is not None)
                or (kind == "hash" and r.hexists(key, task_id))
                or (kind == "set" and r.sismember(key, task_id))
            )
            if held:
                out.append(f"  in Redis: {key.decode(errors='replace')} ({kind})")
    for log in sorted(logs.glob("*")):
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                if task_id in line:
                    out.append(f"  {log.name}: {line[:300]}")
    return "\n".join(out[:60])
