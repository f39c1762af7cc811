"""`tasktide schedule add|list|show|delete|pause|resume`: periodic schedules from the command line.

Each command prints JSON lines. Exit codes as for every command: 2 bad arguments (including a bad
cron expression), 3 the platform is unreachable, 4 no such schedule.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tasktide._client import Client
from tasktide._exceptions import ConfigurationError
from tasktide._schedules import Schedule
from tasktide._settings import ClientSettings


def _json(text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise ConfigurationError(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _out(s: Schedule) -> dict[str, Any]:
    return {
        "name": s.name,
        "task": s.task_name,
        "cron": s.cron or None,
        "every": s.every or None,
        "timezone": s.timezone,
        "queue": s.queue,
        "args": s.args,
        "kwargs": s.kwargs,
        "paused": s.paused,
        "next_run": s.next_run.isoformat() if s.next_run else None,
        "last_run": s.last_run.isoformat() if s.last_run else None,
        "last_task_id": s.last_task_id or None,
        "runs": s.runs,
    }


def cmd_schedule(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        if args.action == "list":
            for s in client.list_schedules():
                print(json.dumps(_out(s)))
            return 0
        if args.action == "add":
            if (args.cron is None) == (args.every is None):
                raise ConfigurationError("schedule add needs exactly one of --cron and --every")
            s = client.put_schedule(
                args.name,
                args.task,
                _json(args.args, list, "--args"),
                _json(args.kwargs, dict, "--kwargs"),
                cron=args.cron,
                every=args.every,
                timezone=args.timezone,
                queue=args.queue,
                priority=args.priority,
                paused=args.paused,
            )
        elif args.action == "show":
            s = client.get_schedule(args.name)
        elif args.action == "delete":
            client.delete_schedule(args.name)
            print(json.dumps({"name": args.name, "deleted": True}))
            return 0
        else:
            s = client.pause_schedule(args.name, paused=args.action == "pause")
        print(json.dumps(_out(s)))
        return 0


def add_schedule_parser(sub: Any) -> None:
    sc = sub.add_parser("schedule", help="periodic schedules: add, list, show, delete, pause, resume")
    acts = sc.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = acts.add_parser("add", help="create or replace a schedule")
    add.add_argument("name", help="the schedule's name (its id)")
    add.add_argument("task", help="the task's name, for example shop.report")
    add.add_argument("--cron", help="cron expression, for example '*/5 * * * *'")
    add.add_argument("--every", type=float, help="interval in seconds")
    add.add_argument("--timezone", default="UTC", help="timezone of the cron expression (IANA name)")
    add.add_argument("--args", default="[]", help="JSON array")
    add.add_argument("--kwargs", default="{}", help="JSON object")
    add.add_argument("--queue", default="")
    add.add_argument("--priority", type=int, default=0)
    add.add_argument("--paused", action="store_true", help="create it paused")
    acts.add_parser("list", help="every schedule, one JSON line each")
    for action, text in (
        ("show", "one schedule"),
        ("delete", "delete a schedule"),
        ("pause", "stop firing"),
        ("resume", "fire again, from the next future occurrence"),
    ):
        acts.add_parser(action, help=text).add_argument("name")
    sc.set_defaults(func=cmd_schedule)
