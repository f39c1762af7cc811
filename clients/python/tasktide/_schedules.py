"""Periodic schedules from the client: Schedule (what the platform reports), the requests, and the
schedule methods of Client and AsyncClient (their I/O is the client's `_run`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Unpack

from tasktide._base import Call
from tasktide._codec import decode_payload
from tasktide._exceptions import ConfigurationError, NotFound
from tasktide._spec import SubmitOptions, TaskOptions, build_spec
from tasktide.v1 import scheduler_pb2

T = TypeVar("T")


def _when(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms else None


def _ms(value: dt.datetime | float | None) -> int:
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        return int((value if value.tzinfo else value.astimezone()).timestamp() * 1000)
    return int(float(value) * 1000)


@dataclass(frozen=True)
class Schedule:
    """A periodic schedule as the platform reports it. Times are aware UTC datetimes, or None."""

    name: str
    task_name: str
    cron: str
    every: float
    timezone: str
    queue: str
    args: Any
    kwargs: Any
    paused: bool
    next_run: dt.datetime | None
    last_run: dt.datetime | None
    last_task_id: str
    runs: int

    @classmethod
    def from_proto(cls, s: scheduler_pb2.Schedule) -> Schedule:
        """The Schedule the scheduler sent."""
        return cls(
            name=s.id,
            task_name=s.task.name,
            cron=s.cron,
            every=s.every,
            timezone=s.timezone or "UTC",
            queue=s.task.queue,
            args=decode_payload(s.task.args),
            kwargs=decode_payload(s.task.kwargs),
            paused=s.paused,
            next_run=_when(s.next_run_ms),
            last_run=_when(s.last_run_ms),
            last_task_id=s.last_task_id,
            runs=s.runs,
        )


def schedule_proto(
    name: str,
    task_name: str,
    args: Iterable[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    cron: str | None = None,
    every: float | dt.timedelta | None = None,
    timezone: str = "UTC",
    start: dt.datetime | float | None = None,
    end: dt.datetime | float | None = None,
    paused: bool = False,
    defaults: TaskOptions | None = None,
    **options: Unpack[SubmitOptions],
) -> scheduler_pb2.Schedule:
    """A Schedule message; `options` are those of submit (queue, priority, max_retries, ...) over
    the task's `defaults`."""
    if (cron is None) == (every is None):
        raise ConfigurationError("a schedule needs exactly one of cron= and every=")
    seconds = every.total_seconds() if isinstance(every, dt.timedelta) else every
    if seconds is not None and not seconds > 0:  # 0 would travel as "no interval"; NaN too
        raise ConfigurationError(f"every must be a positive number of seconds, got {seconds}")
    return scheduler_pb2.Schedule(
        id=name,
        task=build_spec(task_name, args, kwargs, options=defaults, **options),
        cron=cron or "",
        every=float(seconds or 0.0),
        timezone=timezone if cron else "",
        start_ms=_ms(start),
        end_ms=_ms(end),
        paused=paused,
    )


def _put(schedule: scheduler_pb2.Schedule, keep_paused: bool) -> Call[Schedule]:
    req = scheduler_pb2.PutScheduleRequest(schedule=schedule, keep_paused=keep_paused)
    return Call("scheduler", "PutSchedule", req, Schedule.from_proto)


def _get(name: str) -> Call[Schedule]:
    return Call("scheduler", "GetSchedule", scheduler_pb2.GetScheduleRequest(id=name), Schedule.from_proto)


def _list() -> Call[list[Schedule]]:
    req = scheduler_pb2.ListSchedulesRequest()
    return Call("scheduler", "ListSchedules", req, lambda r: [Schedule.from_proto(s) for s in r.schedules])


def _deleted(name: str, missing_ok: bool) -> Any:
    def shape(resp: scheduler_pb2.DeleteScheduleResponse) -> bool:
        if not resp.deleted and not missing_ok:
            raise NotFound(f"no schedule with id {name}", "NOT_FOUND")
        return bool(resp.deleted)

    return shape


def _delete(name: str, missing_ok: bool) -> Call[bool]:
    return Call("scheduler", "DeleteSchedule", scheduler_pb2.DeleteScheduleRequest(id=name), _deleted(name, missing_ok))


def _pause(name: str, paused: bool) -> Call[Schedule]:
    req = scheduler_pb2.PauseScheduleRequest(id=name, paused=paused)
    return Call("scheduler", "PauseSchedule", req, Schedule.from_proto)


class ScheduleMethods:
    """The schedule methods of Client."""

    def _run(self, call: Call[T]) -> T:
        raise NotImplementedError

    def put_schedule(
        self,
        name: str,
        task_name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | dt.timedelta | None = None,
        timezone: str = "UTC",
        start: dt.datetime | float | None = None,
        end: dt.datetime | float | None = None,
        paused: bool = False,
        keep_paused: bool = False,
        defaults: TaskOptions | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Schedule:
        """Create or replace a periodic schedule. Putting an unchanged schedule again keeps its next run.

        Args:
            name: the schedule's id.
            task_name: the task it submits, by name.
            args, kwargs: the task's arguments (JSON-compatible).
            cron: a cron expression ("*/5 * * * *"), read in `timezone`; or
            every: an interval (seconds or a timedelta). Exactly one of the two.
            start, end: the schedule fires only between these times (datetimes or Unix seconds).
            paused: create it paused.
            keep_paused: an existing paused schedule stays paused.
            defaults: the task's declared options, under the per-call ones.
            **options: the options of submit (SubmitOptions: queue, priority, max_retries...).
        """
        proto = schedule_proto(
            name, task_name, args, kwargs, cron=cron, every=every, timezone=timezone,
            start=start, end=end, paused=paused, defaults=defaults, **options,
        )  # fmt: skip
        return self._run(_put(proto, keep_paused))

    def put_schedule_proto(self, schedule: scheduler_pb2.Schedule, keep_paused: bool = False) -> Schedule:
        """Create or replace a schedule given as a message (see put_schedule)."""
        return self._run(_put(schedule, keep_paused))

    def get_schedule(self, name: str) -> Schedule:
        """The schedule `name`; raises NotFound when there is none."""
        return self._run(_get(name))

    def list_schedules(self) -> list[Schedule]:
        """Every schedule of the platform."""
        return self._run(_list())

    def delete_schedule(self, name: str, missing_ok: bool = False) -> bool:
        """Delete a schedule: it fires nothing more. Raises NotFound unless it existed or `missing_ok`;
        returns whether it existed."""
        return self._run(_delete(name, missing_ok))

    def pause_schedule(self, name: str, paused: bool = True) -> Schedule:
        """Pause the schedule `name` (`paused=False`: resume it)."""
        return self._run(_pause(name, paused))

    def resume_schedule(self, name: str) -> Schedule:
        """Resume a paused schedule from its next future occurrence (paused ones are not made up)."""
        return self.pause_schedule(name, paused=False)


class AsyncScheduleMethods:
    """The schedule methods of AsyncClient: those of Client (see there), awaited."""

    def _run(self, call: Call[T]) -> Awaitable[T]:
        raise NotImplementedError

    async def put_schedule(
        self,
        name: str,
        task_name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | dt.timedelta | None = None,
        timezone: str = "UTC",
        start: dt.datetime | float | None = None,
        end: dt.datetime | float | None = None,
        paused: bool = False,
        keep_paused: bool = False,
        defaults: TaskOptions | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Schedule:
        """Create or replace a periodic schedule; arguments as Client.put_schedule."""
        proto = schedule_proto(
            name, task_name, args, kwargs, cron=cron, every=every, timezone=timezone,
            start=start, end=end, paused=paused, defaults=defaults, **options,
        )  # fmt: skip
        return await self._run(_put(proto, keep_paused))

    async def put_schedule_proto(self, schedule: scheduler_pb2.Schedule, keep_paused: bool = False) -> Schedule:
        """Create or replace a schedule given as a message."""
        return await self._run(_put(schedule, keep_paused))

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule `name`; raises NotFound when there is none."""
        return await self._run(_get(name))

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule of the platform."""
        return await self._run(_list())

    async def delete_schedule(self, name: str, missing_ok: bool = False) -> bool:
        """Delete a schedule; raises NotFound unless it existed or `missing_ok`."""
        return await self._run(_delete(name, missing_ok))

    async def pause_schedule(self, name: str, paused: bool = True) -> Schedule:
        """Pause the schedule `name` (`paused=False`: resume it)."""
        return await self._run(_pause(name, paused))

    async def resume_schedule(self, name: str) -> Schedule:
        """Resume a paused schedule from its next future occurrence."""
        return await self.pause_schedule(name, paused=False)
