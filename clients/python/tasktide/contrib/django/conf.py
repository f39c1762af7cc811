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
}
_WORKER_KEYS = {"QUEUES", "CONCURRENCY", "POOL"}


@dataclass(frozen=True)
class WorkerDefaults:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 4
    pool: str = "threads"


@dataclass(frozen=True)
class DjangoConf:
    client: ClientSettings = field(default_factory=ClientSettings)
    apps: tuple[str, ...] = ()
    task_modules: tuple[str, ...] = ()
    worker: WorkerDefaults = field(default_factory=WorkerDefaults)


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
    )


@functools.cache
def get_conf() -> DjangoConf:
    """The project's tasktide settings, read on first use (and again after a change of TASKTIDE)."""
    from django.conf import settings

    return load(getattr(settings, "TASKTIDE", None))


def reset(**_: Any) -> None:
    get_conf.cache_clear()
