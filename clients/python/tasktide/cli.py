"""The `tasktide` command line.

Client commands (worker, submit, status) live here; server commands (dev, scheduler, registry,
results) are provided by the tasktide-server distribution and loaded only when asked for.
Exit codes: 0 success, 1 the task failed, 2 bad arguments, 3 the platform is unreachable,
4 no such task, 5 timed out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any

from tasktide._app import App
from tasktide._client import Client
from tasktide._codec import decode_payload
from tasktide._exceptions import (
    ConfigurationError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    TaskFailed,
    TaskTimeout,
    Unauthenticated,
    Unavailable,
)
from tasktide._hooks import NO_HOOKS, Hooks
from tasktide._logging import FORMAT as LOG_FORMAT
from tasktide._logging import install_log_context
from tasktide._plugins import hooks_from_env
from tasktide._schedule_cli import add_schedule_parser
from tasktide._settings import ClientSettings
from tasktide._states import TaskState
from tasktide._tasks_cli import add_tasks_parser
from tasktide.v1 import worker_pb2

SERVER_COMMANDS = ("dev", "scheduler", "registry", "results", "dashboard", "token")


class UsageError(Exception):
    pass


def load_app(target: str) -> App:
    """Import MODULE:ATTR (ATTR defaults to `app`); the current folder is importable."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise UsageError(f"expected MODULE:APP, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        raise UsageError(f"{target!r} is not a tasktide.App")
    return app


def _json_arg(text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise UsageError(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def cmd_worker(args: argparse.Namespace, settings: ClientSettings) -> int:
    from tasktide.worker import WorkerConfig, run_worker

    app = load_app(args.app)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    queues = tuple(q for q in args.queues.split(",") if q) or ("default",)
    config = WorkerConfig(
        queues=queues, concurrency=args.concurrency, pool=args.pool, prefetch=args.prefetch, app_target=args.app
    )
    if type(app.hooks) is Hooks:  # the App has no plugin of its own: use the one from the environment
        app.hooks = args.hooks
    return run_worker(app, config, settings, args.hooks)


def cmd_submit(args: argparse.Namespace, settings: ClientSettings) -> int:
    task_args = _json_arg(args.args, list, "--args")
    task_kwargs = _json_arg(args.kwargs, dict, "--kwargs")
    with Client(settings=settings, hooks=args.hooks) as client:
        handle = client.submit(
            args.name,
            task_args,
            task_kwargs,
            queue=args.queue,
            priority=args.priority,
            countdown=args.countdown,
            idempotency_key=args.idempotency_key,
        )
        if not args.wait:
            print(handle.id)
            return 0
        value = handle.get(timeout=args.timeout)
        print(json.dumps(value))
        return 0


def cmd_status(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        res = client.fetch([args.id])[0]
        if not res.found:  # not dispatched yet (or unknown: NotFound)
            task = client.get_task(args.id)
            res.name, res.state, res.attempt = task.spec.name, task.state, task.attempt
        state = TaskState.from_proto(res.state)
        out: dict[str, Any] = {"id": args.id, "name": res.name, "state": state.name, "attempt": res.attempt}
        if state is TaskState.SUCCEEDED:
            out["result"] = decode_payload(res.result)
        if res.error.type:
            out["error"] = {"type": res.error.type, "message": res.error.message}
        print(json.dumps(out))
        return 0


def cmd_explain(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        e = client.explain(args.id)
        out = {"id": e.task_id, "state": e.state.name, "reason": e.reason, "message": e.message}
        print(json.dumps(out | ({"cancel_asked": True} if e.cancel_asked else {})))
        return 0


def cmd_cancel(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        state = client.cancel(args.id)
        print(json.dumps({"id": args.id, "state": state.name}))
        return 0


def cmd_queue(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        if args.action in ("pause", "resume"):
            if not args.name:
                raise UsageError(f"queue {args.action} needs a queue name")
            client.pause_queue(args.name, paused=args.action == "pause")
        for st in client.queue_stats():
            if not args.name or st.queue == args.name:
                print(
                    json.dumps(
                        {
                            "queue": st.queue,
                            "ready": st.ready,
                            "running": st.leased,
                            "dead": st.dead,
                            "paused": st.paused,
                            "consumers": st.consumers,
                        }
                    )
                )
        return 0


def _session(w: worker_pb2.WorkerInfo) -> dict[str, Any]:
    info = {"worker": w.worker_id, "session": w.session_id, "hostname": w.hostname, "pid": w.pid}
    return info | {"language": w.language, "queues": list(w.queues), "concurrency": w.concurrency}


RUNNING_SHOWN = 200  # tasks `workers show` lists as running, at most


def _show_worker(client: Client, worker_id: str) -> dict[str, Any]:
    """A connected worker's sessions and the tasks leased to it now (running, or prefetched)."""
    sessions = [_session(w) for w in client.workers() if w.worker_id == worker_id]
    if not sessions:
        raise NotFound(f"no worker {worker_id[:80]!r} is connected")
    page = client.list_tasks(TaskState.RUNNING, worker_id=worker_id, limit=RUNNING_SHOWN)
    running = [
        {"id": r.task_id, "name": r.name, "queue": r.spec.queue, "attempt": r.attempt, "started_ms": r.started_ms}
        for r in page.tasks
    ]
    return {"worker": worker_id, "sessions": sessions, "running": running, "more_running": bool(page.next_cursor)}


def cmd_workers(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        if args.action in ("drain", "show", "resize"):
            if not args.id:
                raise UsageError(f"workers {args.action} needs a worker id (`tasktide workers` lists them)")
            if (args.concurrency is None) != (args.action != "resize"):
                raise UsageError("workers resize takes a worker id and a concurrency; the others no concurrency")
            if args.action == "show":
                print(json.dumps(_show_worker(client, args.id)))
            elif args.action == "resize":
                sessions = client.resize_worker(args.id, args.concurrency)
                print(json.dumps({"worker": args.id, "sessions": sessions, "concurrency": args.concurrency}))
            else:
                print(json.dumps({"worker": args.id, "sessions": client.drain_worker(args.id)}))
            return 0
        if args.id or args.concurrency is not None:
            raise UsageError("workers list takes no worker id")
        for w in client.workers():
            print(json.dumps(_session(w)))
        return 0


def cmd_dead(args: argparse.Namespace, settings: ClientSettings) -> int:
    with Client(settings=settings) as client:
        if args.requeue:
            n = client.requeue_dead(args.queue or "default", args.ids)
            print(json.dumps({"requeued": n}))
            return 0
        for d in client.dead_letters(args.queue, args.limit):
            print(json.dumps({"id": d.task_id, "name": d.name, "queue": d.queue, "dead_at": d.dead_at.isoformat()}))
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tasktide", description="tasktide distributed task platform")
    p.add_argument("--address", help="platform address (default: $TASKTIDE_ADDRESS or 127.0.0.1:50051)")
    p.add_argument("--log-level", default=os.environ.get("TASKTIDE_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    w = sub.add_parser("worker", help="run a worker for the tasks of MODULE:APP")
    w.add_argument("app", metavar="MODULE:APP")
    w.add_argument("--concurrency", "-c", type=int, default=os.cpu_count() or 2)
    w.add_argument("--pool", choices=["threads", "asyncio", "processes"], default="threads")
    w.add_argument("--queues", "-Q", default="default", help="comma-separated, consumed in this order")
    w.add_argument(
        "--prefetch",
        type=int,
        default=0,
        help="tasks held beyond --concurrency (default 0: three per slot, up to 32 per slot while tasks are short)",
    )
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("submit", help="submit a task by name")
    s.add_argument("name")
    s.add_argument("--args", default="[]", help="JSON array")
    s.add_argument("--kwargs", default="{}", help="JSON object")
    s.add_argument("--queue", default="")
    s.add_argument("--priority", type=int, default=0)
    s.add_argument("--countdown", type=float, default=None)
    s.add_argument("--idempotency-key", default=None)
    s.add_argument("--wait", action="store_true", help="wait for the result and print it as JSON")
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait with --wait")
    s.set_defaults(func=cmd_submit)

    st = sub.add_parser("status", help="show a task's state")
    st.add_argument("id")
    st.set_defaults(func=cmd_status)

    ex = sub.add_parser("explain", help="why a task is not running (yet)")
    ex.add_argument("id")
    ex.set_defaults(func=cmd_explain)

    ca = sub.add_parser("cancel", help="cancel a task (queued, delayed or running)")
    ca.add_argument("id")
    ca.set_defaults(func=cmd_cancel)

    qu = sub.add_parser("queue", help="queue statistics; pause or resume a queue")
    qu.add_argument("action", choices=["stats", "pause", "resume"])
    qu.add_argument("name", nargs="?", default="")
    qu.set_defaults(func=cmd_queue)

    wo = sub.add_parser(
        "workers", help="list the connected workers; show one (sessions, running tasks), resize its pool, or drain it"
    )
    wo.add_argument("action", nargs="?", choices=["list", "show", "resize", "drain"], default="list")
    wo.add_argument("id", nargs="?", default="", help="with show, resize and drain: the worker's id")
    wo.add_argument("concurrency", nargs="?", type=int, help="with resize: tasks at a time (1..1024)")
    wo.set_defaults(func=cmd_workers)

    de = sub.add_parser("dead", help="list dead-letter tasks, or requeue them")
    de.add_argument("ids", nargs="*", help="with --requeue: ids to requeue (default: all of the queue)")
    de.add_argument("--queue", default="")
    de.add_argument("--limit", type=int, default=100)
    de.add_argument("--requeue", action="store_true")
    de.set_defaults(func=cmd_dead)

    add_tasks_parser(sub)
    add_schedule_parser(sub)

    for name in SERVER_COMMANDS:
        sp = sub.add_parser(name, help=f"run the {name} server (tasktide-server)", add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _server_main(command: str, rest: list[str], entry: bool) -> int:
    """`entry`: this call is the process's own command line (the server may start the process
    again to set gRPC up for serving: tasktide_services.common.grpc_core)."""
    try:
        server_cli = importlib.import_module("tasktide_services.cli")
    except ImportError:
        print(f"tasktide: '{command}' needs the server: pip install tasktide-server", file=sys.stderr)
        return 2
    return int(server_cli.main([command, *rest], entry=entry))


def main(argv: list[str] | None = None) -> int:
    entry = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command not in SERVER_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    log_context = install_log_context(NO_HOOKS)  # before anything logs: the format names its fields
    args.hooks = NO_HOOKS if args.command in SERVER_COMMANDS else hooks_from_env(f"tasktide-{args.command}")
    log_context.hooks = args.hooks
    if args.command in SERVER_COMMANDS:
        rest = [*unknown, *args.rest]
        if args.address:
            rest = ["--address", args.address, *rest]
        return _server_main(args.command, rest, entry)
    settings = ClientSettings.from_env(address=args.address or "")
    try:
        return int(args.func(args, settings))
    except (UsageError, ConfigurationError, InvalidArgument, Unauthenticated, PermissionDenied, ValueError) as exc:
        print(f"tasktide: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"tasktide: {exc}", file=sys.stderr)
        return 3
    except NotFound as exc:
        print(f"tasktide: {exc}", file=sys.stderr)
        return 4
    except TaskTimeout as exc:
        print(f"tasktide: {exc}", file=sys.stderr)
        return 5
    except TaskFailed as exc:
        print(f"tasktide: {exc}", file=sys.stderr)
        if exc.remote_traceback:
            print(exc.remote_traceback, file=sys.stderr)
        return 1
    except ServiceError as exc:  # refused as it stands (FAILED_PRECONDITION: a worker that cannot resize)
        print(f"tasktide: {exc}", file=sys.stderr)
        return 6


if __name__ == "__main__":
    sys.exit(main())
