"""What recording a finished bulk task costs the server, measured without Redis.

    python -m bench.record_cost [--tasks 1000] [--repeats 30]

When the workers report outcomes, the registry builds each task's events (its QUEUED event with the
spec, RUNNING, and the final one; common/events.py) and the results service puts them on a pipeline
(ResultsStore.build_record: one record script per task, the index entries). In `make bench`'s bulk
row both run in the server process, whose CPU sets the pace, and they are the largest part of it.
Here they run on a pipeline that is never sent, so the figures need no platform and depend on the
machine's load far less than a throughput does: CPU microseconds per task (the least of `repeats`
batches of `tasks`), and the commands and bytes the pipeline would send to Redis per task (exact).
Each figure with the task index on and off. Comparing two commits: run it in each.
"""

from __future__ import annotations

import argparse
import time
import uuid

import hiredis
from redis.asyncio import Redis

from tasktide.v1 import task_pb2
from tasktide_services.common.events import event, first_events
from tasktide_services.common.settings import IndexSettings
from tasktide_services.results.store import ResultsStore

DAY = 86_400.0


def bulk_task() -> task_pb2.Task:
    """A no-op task as admission leaves it (bench.tt_tasks.noop, no arguments)."""
    spec = task_pb2.TaskSpec(name="bench.tt_tasks.noop", queue="default")
    return task_pb2.Task(
        id=uuid.uuid4().hex, spec=spec, state=task_pb2.TASK_STATE_QUEUED, created_ms=int(time.time() * 1000)
    )


def task_events(task: task_pb2.Task) -> list[task_pb2.TaskEvent]:
    """The events the registry records for a task that ran once and succeeded."""
    queued = first_events(task)
    task.state = task_pb2.TASK_STATE_RUNNING
    running = event(task, task_pb2.TASK_STATE_RUNNING, worker_id="worker-1")
    done = event(task, task_pb2.TASK_STATE_SUCCEEDED, worker_id="worker-1", run_ms=1)
    return [*queued, running, done]


def measure(tasks: int, repeats: int, index: bool) -> dict[str, float]:
    redis = Redis()  # never connected: the pipeline is built, not sent
    store = ResultsStore(redis, DAY, IndexSettings(enabled=index))
    build_us = record_us = float("inf")
    commands = sent = 0
    for _ in range(repeats):
        batch = [bulk_task() for _ in range(tasks)]
        t0 = time.process_time()
        events = [e for t in batch for e in task_events(t)]
        t1 = time.process_time()
        pipe = redis.pipeline(transaction=False)
        store.build_record(pipe, events)
        t2 = time.process_time()
        build_us = min(build_us, (t1 - t0) * 1e6 / tasks)
        record_us = min(record_us, (t2 - t1) * 1e6 / tasks)
        commands = len(pipe.command_stack)
        sent = sum(len(hiredis.pack_command(args)) for args, _ in pipe.command_stack)
    return {"events_us": build_us, "record_us": record_us, "commands": commands / tasks, "bytes": sent / tasks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1000, help="tasks per batch (the registry records in batches)")
    ap.add_argument("--repeats", type=int, default=30, help="batches timed; the least time is kept")
    args = ap.parse_args()
    print("index | events, CPU us/task | build_record, CPU us/task | commands/task | bytes to Redis/task")
    for index in (True, False):
        f = measure(args.tasks, args.repeats, index)
        print(
            f"{'on' if index else 'off'} | {f['events_us']:.1f} | {f['record_us']:.1f} | "
            f"{f['commands']:.3f} | {f['bytes']:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
