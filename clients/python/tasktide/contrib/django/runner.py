"""The worker side: an App that runs Django tasks (found by import path) and the native tasks of the
Apps listed in TASKTIDE["APPS"], each call with Django's database connections looked after."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.db import close_old_connections
from django.utils.module_loading import import_string

from tasktide._app import App
from tasktide._app import Task as NativeTask
from tasktide._spec import TaskOptions
from tasktide.contrib.django.compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    task_finished,
    task_started,
)
from tasktide.contrib.django.conf import DjangoConf
from tasktide.worker import current_task

log = logging.getLogger("tasktide.django")


def _worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sender() -> type:
    from tasktide.contrib.django.backend import TasktideBackend

    return TasktideBackend


def run_django_task(task: Task, *args: Any, **kwargs: Any) -> Any:
    """Run one Django task the way the framework describes: context, signals, result."""
    ctx = current_task()
    now = _now()
    result = TaskResult(
        task=task,
        id=ctx.id,
        status=TaskResultStatus.RUNNING,
        enqueued_at=None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=list(args),
        kwargs=dict(kwargs),
        backend=task.backend,
        errors=[],
        worker_ids=[_worker_name()] * (ctx.attempt + 1),
    )
    task_started.send(sender=_sender(), task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except BaseException as exc:
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        cls = type(exc)
        result.errors.append(TaskError(exception_class_path=f"{cls.__module__}.{cls.__qualname__}", traceback=""))
        raise
    else:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        return value
    finally:
        object.__setattr__(result, "finished_at", _now())
        task_finished.send(sender=_sender(), task_result=result)


def with_connections(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Close database connections that are broken or past CONN_MAX_AGE before and after each task, as
    a request does. Async functions are left as they are: their ORM calls run in sync_to_async threads."""
    if inspect.iscoroutinefunction(fn):
        return fn

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return run


def allowed_packages(conf: DjangoConf) -> tuple[str, ...]:
    """Packages Django tasks may be imported from by name: TASK_MODULES, else every installed app."""
    return conf.task_modules or tuple(c.name for c in apps.get_app_configs())


def in_packages(path: str, packages: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in packages)


class DjangoResolver:
    """Finds the task a worker is asked to run: a native task of a listed App, or a Django task by
    its import path, imported only from the allowed packages (installed apps unless TASK_MODULES)."""

    def __init__(self, conf: DjangoConf) -> None:
        self.native_apps: list[App] = [import_string(path) for path in conf.apps]
        self.allowed = allowed_packages(conf)
        self.app: App | None = None
        self._cache: dict[str, NativeTask[Any, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> NativeTask[Any, Any] | None:
        # Only tasks found are kept: names sent by others must not grow the cache.
        with self._lock:
            found = self._cache.get(name)
            if found is None:
                found = self._find(name)
                if found is not None:
                    self._cache[name] = found
            return found

    def _find(self, name: str) -> NativeTask[Any, Any] | None:
        assert self.app is not None
        for native in self.native_apps:
            t = native.lookup(name)
            if t is not None:
                fn = with_connections(t.fn)
                return NativeTask(self.app, fn, name, t.options, t.autoretry_for, t.dont_autoretry_for, t.rate_limit)
        if not in_packages(name, self.allowed):
            return None
        try:
            obj = import_string(name)
        except Exception as exc:  # noqa: BLE001 - a module that fails to import is no task to run
            log.warning("cannot import task %s: %s: %s", name, type(exc).__name__, exc)
            return None
        if not isinstance(obj, Task):
            return None
        fn = with_connections(functools.partial(run_django_task, obj))
        # Retries follow each task's spec (the backend's max_retries option); any exception counts.
        return NativeTask(self.app, fn, name, TaskOptions(), (Exception,), (), "")


def build_worker_app(conf: DjangoConf) -> App:
    resolver = DjangoResolver(conf)
    app = App("django", settings=conf.client, resolver=resolver)
    resolver.app = app
    return app
