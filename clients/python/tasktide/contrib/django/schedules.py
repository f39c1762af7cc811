"""Periodic schedules declared in TASKTIDE["SCHEDULES"], put on the platform at deploy time by
`python manage.py tasktide_sync_schedules` (idempotent: an unchanged schedule keeps its next run, and
one an operator paused stays paused).

A schedule's TASK is a Django task's import path (the worker runs it as `enqueue()` would; its queue
and priority are the task's unless QUEUE or PRIORITY say otherwise, and its retries are its
backend's MAX_RETRIES option) or the name of a native task of an App in TASKTIDE["APPS"] (its
declared options apply).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from tasktide._client import Client
from tasktide._schedules import Schedule
from tasktide._spec import TaskOptions
from tasktide.contrib.django.conf import DjangoConf, ScheduleDecl


@dataclass(frozen=True)
class Synced:
    schedule: Schedule
    change: str  # "created", "updated" or "unchanged"


def _django_task(path: str) -> Any:
    from tasktide.contrib.django.compat import Task

    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


def _native_options(conf: DjangoConf, name: str) -> TaskOptions | None:
    for path in conf.apps:
        task = import_string(path).lookup(name)
        if task is not None:
            return task.options  # type: ignore[no-any-return]
    return None


def put_arguments(decl: ScheduleDecl, conf: DjangoConf) -> dict[str, Any]:
    """The arguments of Client.put_schedule for one declared schedule."""
    options: dict[str, Any] = {}
    task = _django_task(decl.task)
    if task is not None:
        from tasktide.contrib.django.backend import TasktideBackend
        from tasktide.contrib.django.compat import task_backends

        options["queue"] = task.queue_name
        options["priority"] = task.priority
        backend = task_backends[task.backend]
        if isinstance(backend, TasktideBackend):
            opts = backend.opts
            options["defaults"] = TaskOptions(max_retries=opts.max_retries, retry_backoff=opts.retry_backoff)
        name = task.module_path
    else:
        defaults = _native_options(conf, decl.task)
        if defaults is not None:
            options["defaults"] = defaults
        name = decl.task
    if decl.queue:
        options["queue"] = decl.queue
    if decl.priority is not None:
        options["priority"] = decl.priority
    if decl.max_retries is not None:
        options["max_retries"] = decl.max_retries
    timing: dict[str, Any] = {"cron": decl.cron, "timezone": decl.timezone} if decl.cron else {"every": decl.every}
    return {
        "name": decl.name,
        "task_name": name,
        "args": list(decl.args),
        "kwargs": dict(decl.kwargs),
        "paused": decl.paused,
        "keep_paused": True,
        **timing,
        **options,
    }


def _same(a: Schedule, b: Schedule) -> bool:
    def key(s: Schedule) -> tuple[Any, ...]:
        data = json.dumps([s.args, s.kwargs], sort_keys=True, default=str)
        return (s.task_name, s.cron, s.every, s.timezone, s.queue, data, s.paused)

    return key(a) == key(b)


def sync(client: Client, conf: DjangoConf, *, prune: bool = False) -> tuple[list[Synced], list[str]]:
    """Put every declared schedule on the platform; with `prune`, delete the platform's schedules that
    are not declared. Returns what was put (with what changed) and the names deleted."""
    before = {s.name: s for s in client.list_schedules()}
    out: list[Synced] = []
    for decl in conf.schedules:
        put = client.put_schedule(**put_arguments(decl, conf))
        old = before.get(decl.name)
        change = "created" if old is None else "unchanged" if _same(old, put) else "updated"
        out.append(Synced(put, change))
    deleted: list[str] = []
    if prune:
        declared = {d.name for d in conf.schedules}
        for name in sorted(set(before) - declared):
            if client.delete_schedule(name, missing_ok=True):
                deleted.append(name)
    return out, deleted


def describe(s: Schedule) -> str:
    """'cron 5 0 * * * (Europe/Paris)' or 'every 30 s'."""
    if s.cron:
        return f"cron {s.cron} ({s.timezone})"
    return f"every {s.every:g} s"


def iso(moment: dt.datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def matching(schedules: Iterable[Schedule], query: str, paused: str) -> Sequence[Schedule]:
    """The admin list's search (name or task, case-insensitive) and paused filter ("1", "0" or "")."""
    q = query.strip().lower()
    return [
        s
        for s in sorted(schedules, key=lambda s: s.name)
        if (not q or q in s.name.lower() or q in s.task_name.lower()) and (paused == "" or s.paused == (paused == "1"))
    ]
