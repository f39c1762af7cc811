"""`tasktide tasks list`: tasks from the results service's index, as JSON lines (see cli.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tasktide._client import Client
from tasktide._settings import ClientSettings
from tasktide._states import TaskState


def _task_line(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.task_id,
        "name": r.name,
        "state": TaskState.from_proto(r.state).name,
        "queue": r.spec.queue,
        "attempt": r.attempt,
        "worker": r.worker_id,
        "updated_ms": r.updated_ms,
    }
    if r.error.type:
        out["error"] = {"type": r.error.type, "message": r.error.message}
    return out


def cmd_tasks(args: argparse.Namespace, settings: ClientSettings) -> int:
    """One JSON line per task, the latest changed first; then {"next_cursor": ...} when there are
    more (with --all: every page)."""
    cursor = args.cursor
    with Client(settings=settings) as client:
        while True:
            page = client.list_tasks(
                args.state or (),
                name=args.name,
                queue=args.queue,
                worker_id=args.worker,
                error_type=args.error_type,
                limit=args.limit,
                cursor=cursor,
            )
            for r in page.tasks:
                print(json.dumps(_task_line(r)))
            cursor = page.next_cursor
            if not cursor:
                return 0
            if not args.all:
                print(json.dumps({"next_cursor": cursor}))
                return 0


def add_tasks_parser(sub: Any) -> None:
    ta = sub.add_parser("tasks", help="list tasks, the latest changed first (JSON lines)")
    ta.add_argument("action", choices=["list"])
    ta.add_argument("--state", action="append", help="a state such as FAILED (repeat for several)")
    ta.add_argument("--name", default="", help="task name")
    ta.add_argument("--queue", default="")
    ta.add_argument("--worker", default="", help="worker id of the latest event")
    ta.add_argument("--error-type", default="", help="error type, for example ValueError")
    ta.add_argument("--limit", type=int, default=100, help="tasks per page (at most 1000)")
    ta.add_argument("--cursor", default="", help="the next_cursor printed by the previous page")
    ta.add_argument("--all", action="store_true", help="follow the cursor through every page")
    ta.set_defaults(func=cmd_tasks)
