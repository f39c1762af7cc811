"""Periodic tasks declared on an App, registered with the platform by `app.sync_schedules(client)`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasktide._exceptions import ConfigurationError
from tasktide._schedules import Schedule, schedule_proto

if TYPE_CHECKING:
    from tasktide._app import Task
    from tasktide._client import Client


@dataclass(frozen=True)
class Periodic:
    """One declared schedule: a task name with its arguments and when it fires."""

    name: str
    task_name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # cron/every/timezone/start/end and submit options


class PeriodicMixin:
    """`periodic_task`, `add_periodic` and `sync_schedules` of App."""

    if TYPE_CHECKING:
        name: str

        @property
        def client(self) -> Client: ...

        def task(self, fn: Any = None, **opts: Any) -> Any: ...

        def lookup(self, name: str) -> Task[Any, Any] | None: ...

    @property
    def periodic(self) -> dict[str, Periodic]:
        """Declared schedules by name."""
        found: dict[str, Periodic] | None = self.__dict__.get("_periodic")
        if found is None:
            found = self.__dict__["_periodic"] = {}
        return found

    def add_periodic(
        self,
        task: Task[Any, Any] | str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | dt.timedelta | None = None,
        name: str | None = None,
        **options: Any,
    ) -> Periodic:
        """Declare that `task` (a Task or a task name) runs with these arguments by `cron=` (with
        `timezone=`) or `every=` seconds. `name` (the schedule's id) defaults to the task's name.
        Nothing is sent until sync_schedules()."""
        if (cron is None) == (every is None):
            raise ConfigurationError("a periodic task needs exactly one of cron= and every=")
        task_name = task if isinstance(task, str) else task.name
        if not isinstance(task, str):
            # The task's own defaults (queue, retries, limits) apply to every occurrence.
            options = {"defaults": task.options, **options}
        entry = Periodic(
            name or task_name, task_name, tuple(args), dict(kwargs or {}), {"cron": cron, "every": every, **options}
        )
        if entry.name in self.periodic:
            raise ConfigurationError(f"schedule {entry.name!r} is declared twice")
        schedule_proto(entry.name, entry.task_name, entry.args, entry.kwargs, **entry.options)  # fail early
        self.periodic[entry.name] = entry
        return entry

    def periodic_task(
        self,
        *,
        cron: str | None = None,
        every: float | dt.timedelta | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        schedule_name: str | None = None,
        timezone: str = "UTC",
        **task_options: Any,
    ) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Register a task (options as for @app.task) that runs by `cron=` or `every=` seconds."""

        def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
            t: Task[Any, Any] = self.task(**task_options)(fn)
            extra: dict[str, Any] = {"timezone": timezone} if cron else {}
            self.add_periodic(t, args, kwargs, cron=cron, every=every, name=schedule_name, **extra)
            return t

        return decorate

    def sync_schedules(self, client: Client | None = None) -> list[Schedule]:
        """Create or update every declared schedule on the platform. Idempotent: an unchanged schedule
        keeps its next run, and a schedule an operator paused stays paused."""
        client = client or self.client
        return [
            client.put_schedule(p.name, p.task_name, p.args, p.kwargs, keep_paused=True, **p.options)
            for p in self.periodic.values()
        ]
