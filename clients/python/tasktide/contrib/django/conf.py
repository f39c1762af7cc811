"""tasktide settings for a Django project, read once from the TASKTIDE setting and passed down.

TASKTIDE = {
    "ADDRESS": "127.0.0.1:50051",        # else TASKTIDE_ADDRESS, else 127.0.0.1:50051
    "SCHEDULER_ADDRESS": "", "REGISTRY_ADDRESS": "", "RESULTS_ADDRESS": "",
    "SUBMIT_REDIS_URL": "",              # else TASKTIDE_SUBMIT_REDIS_URL: enqueue() writes runnable
                                         # tasks straight to the platform's Redis (docs/tuning.md)
    "SUBMIT_TRANSPORT": "",              # else TASKTIDE_SUBMIT_TRANSPORT: stream, pipelined or unary
    "TOKEN": "",                         # else TASKTIDE_TOKEN: sent on every call (docs/security.md)
    "TLS_CA": "", "TLS_CERT": "", "TLS_KEY": "",   # else TASKTIDE_TLS_*: TLS to the platform
    "APPS": ["shop.tasks.app"],          # tasktide Apps whose native tasks the worker also runs
    "TASK_MODULES": ["shop"],            # packages the worker may import Django tasks from
                                         # (default: every installed app)
    "WORKER": {"QUEUES": ["default"], "CONCURRENCY": 4, "POOL": "threads"},
    "SCHEDULES": {                       # periodic schedules, put on the platform by
        "daily-sales-report": {          # `manage.py tasktide_sync_schedules` (schedules.py)
            "TASK": "shop.tasks.build_sales_report",   # a Django task's import path or a native task's name
            "CRON": "5 0 * * *", "TIMEZONE": "Europe/Paris",   # or "EVERY": seconds
            "ARGS": [], "KWARGS": {}, "QUEUE": "", "PRIORITY": 0, "MAX_RETRIES": 0, "PAUSED": False,
        },
    },
}
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tasktide._settings import ClientSettings

_KEYS = {
    "ADDRESS",
    "SCHEDULER_ADDRESS",
    "REGISTRY_ADDRESS",
    "RESULTS_ADDRESS",
    "SUBMIT_REDIS_URL",
    "SUBMIT_TRANSPORT",
    "TOKEN",
    "TLS_CA",
    "TLS_CERT",
    "TLS_KEY",
    "APPS",
    "TASK_MODULES",
    "WORKER",
    "SCHEDULES",
}
_WORKER_KEYS = {"QUEUES", "CONCURRENCY", "POOL"}
_SCHEDULE_KEYS = {"TASK", "CRON", "EVERY", "TIMEZONE", "ARGS", "KWARGS", "QUEUE", "PRIORITY", "MAX_RETRIES", "PAUSED"}


@dataclass(frozen=True)
class WorkerDefaults:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 4
    pool: str = "threads"


@dataclass(frozen=True)
class ScheduleDecl:
    """A periodic schedule declared in TASKTIDE["SCHEDULES"]; queue and priority default to the task's."""

    name: str
    task: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = ""
    priority: int | None = None
    max_retries: int | None = None
    paused: bool = False


@dataclass(frozen=True)
class DjangoConf:
    client: ClientSettings = field(default_factory=ClientSettings)
    apps: tuple[str, ...] = ()
    task_modules: tuple[str, ...] = ()
    worker: WorkerDefaults = field(default_factory=WorkerDefaults)
    schedules: tuple[ScheduleDecl, ...] = ()


def _unknown(given: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise ImproperlyConfigured(
            f"{where} has unknown key(s) {', '.join(extra)}; tasktide understands {', '.join(sorted(known))}"
        )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ImproperlyConfigured(f"{where} must be a list of strings, not {value!r}")
    return tuple(value)


def client_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ClientSettings:
    """Client settings from a TASKTIDE-style mapping, falling back to TASKTIDE_* variables."""
    base = ClientSettings.from_env(os.environ if env is None else env, address=raw.get("ADDRESS") or "")
    overrides = {
        attr: raw[key]
        for key, attr in (
            ("SCHEDULER_ADDRESS", "scheduler_address"),
            ("REGISTRY_ADDRESS", "registry_address"),
            ("RESULTS_ADDRESS", "results_address"),
            ("SUBMIT_REDIS_URL", "submit_redis_url"),
            ("SUBMIT_TRANSPORT", "submit_transport"),
            ("TOKEN", "token"),
            ("TLS_CA", "tls_ca"),
            ("TLS_CERT", "tls_cert"),
            ("TLS_KEY", "tls_key"),
        )
        if raw.get(key)
    }
    return replace(base, **overrides)


def _schedule(name: Any, raw: Any) -> ScheduleDecl:
    where = f"TASKTIDE['SCHEDULES'][{name!r}]"
    if not isinstance(name, str) or not name:
        raise ImproperlyConfigured(f"TASKTIDE['SCHEDULES'] keys are schedule names (strings), not {name!r}")
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict")
    _unknown(raw, _SCHEDULE_KEYS, where)
    task = raw.get("TASK")
    if not isinstance(task, str) or not task:
        raise ImproperlyConfigured(f"{where}['TASK'] must name a task (a Django task's import path or a task name)")
    cron, every = raw.get("CRON"), raw.get("EVERY")
    if (cron is None) == (every is None):
        raise ImproperlyConfigured(f"{where} needs exactly one of CRON and EVERY")
    if cron is not None and not isinstance(cron, str):
        raise ImproperlyConfigured(f"{where}['CRON'] must be a cron expression, not {cron!r}")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int | float) or every <= 0):
        raise ImproperlyConfigured(f"{where}['EVERY'] must be a number of seconds above 0, not {every!r}")
    args, kwargs = raw.get("ARGS", ()), raw.get("KWARGS", {})
    if isinstance(args, str | Mapping) or not isinstance(args, list | tuple):
        raise ImproperlyConfigured(f"{where}['ARGS'] must be a list")
    if not isinstance(kwargs, Mapping):
        raise ImproperlyConfigured(f"{where}['KWARGS'] must be a dict")
    priority, max_retries = raw.get("PRIORITY"), raw.get("MAX_RETRIES")
    for key, value in (("PRIORITY", priority), ("MAX_RETRIES", max_retries)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ImproperlyConfigured(f"{where}['{key}'] must be an integer, not {value!r}")
    return ScheduleDecl(
        name=name,
        task=task,
        cron=cron,
        every=float(every) if every is not None else None,
        timezone=str(raw.get("TIMEZONE") or "UTC"),
        args=tuple(args),
        kwargs=dict(kwargs),
        queue=str(raw.get("QUEUE") or ""),
        priority=priority,
        max_retries=max_retries,
        paused=bool(raw.get("PAUSED", False)),
    )


def _schedules(raw: Any) -> tuple[ScheduleDecl, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("TASKTIDE['SCHEDULES'] must be a dict of schedule name to schedule")
    return tuple(_schedule(name, value) for name, value in raw.items())


def load(raw: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> DjangoConf:
    """Validate and read a TASKTIDE setting."""
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("TASKTIDE must be a dict")
    _unknown(raw, _KEYS, "TASKTIDE")
    worker_raw = raw.get("WORKER") or {}
    _unknown(worker_raw, _WORKER_KEYS, "TASKTIDE['WORKER']")
    worker = WorkerDefaults(
        queues=_strings(worker_raw.get("QUEUES", ("default",)), "TASKTIDE['WORKER']['QUEUES']"),
        concurrency=int(worker_raw.get("CONCURRENCY", 4)),
        pool=str(worker_raw.get("POOL", "threads")),
    )
    return DjangoConf(
        client=client_settings(raw, env),
        apps=_strings(raw.get("APPS", ()), "TASKTIDE['APPS']"),
        task_modules=_strings(raw.get("TASK_MODULES", ()), "TASKTIDE['TASK_MODULES']"),
        worker=worker,
        schedules=_schedules(raw.get("SCHEDULES")),
    )


@functools.cache
def get_conf() -> DjangoConf:
    """The project's tasktide settings, read on first use (and again after a change of TASKTIDE)."""
    from django.conf import settings

    return load(getattr(settings, "TASKTIDE", None))


def reset(**_: Any) -> None:
    get_conf.cache_clear()
