"""Periodic schedules from the client: Schedule (what the platform reports) and the Client's methods."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from tasktide._codec import decode_payload
from tasktide._errors import translate
from tasktide._exceptions import ConfigurationError, NotFound
from tasktide._settings import ClientSettings
from tasktide._spec import build_spec
from tasktide.v1 import scheduler_pb2, scheduler_pb2_grpc


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
    **options: Any,
) -> scheduler_pb2.Schedule:
    """A Schedule message; `options` are those of submit (queue, priority, max_retries, ...)."""
    if (cron is None) == (every is None):
        raise ConfigurationError("a schedule needs exactly one of cron= and every=")
    seconds = every.total_seconds() if isinstance(every, dt.timedelta) else every
    return scheduler_pb2.Schedule(
        id=name,
        task=build_spec(task_name, args, kwargs, **options),
        cron=cron or "",
        every=float(seconds or 0.0),
        timezone=timezone if cron else "",
        start_ms=_ms(start),
        end_ms=_ms(end),
        paused=paused,
    )


class ScheduleMethods:
    """The schedule methods of Client."""

    settings: ClientSettings
    _scheduler: scheduler_pb2_grpc.SchedulerStub

    def put_schedule(
        self,
        name: str,
        task_name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        keep_paused: bool = False,
        **options: Any,
    ) -> Schedule:
        """Create or replace the schedule `name`, firing `task_name` with `cron="*/5 * * * *"` (with
        `timezone=`) or `every=30.0` seconds; optional `start`, `end`, `paused` and the options of
        submit. Putting an unchanged schedule again keeps its next run."""
        return self.put_schedule_proto(schedule_proto(name, task_name, args, kwargs, **options), keep_paused)

    def put_schedule_proto(self, schedule: scheduler_pb2.Schedule, keep_paused: bool = False) -> Schedule:
        req = scheduler_pb2.PutScheduleRequest(schedule=schedule, keep_paused=keep_paused)
        return Schedule.from_proto(self._call(self._scheduler.PutSchedule, req))

    def get_schedule(self, name: str) -> Schedule:
        """The schedule `name`; raises NotFound when there is none."""
        return Schedule.from_proto(self._call(self._scheduler.GetSchedule, scheduler_pb2.GetScheduleRequest(id=name)))

    def list_schedules(self) -> list[Schedule]:
        resp = self._call(self._scheduler.ListSchedules, scheduler_pb2.ListSchedulesRequest())
        return [Schedule.from_proto(s) for s in resp.schedules]

    def delete_schedule(self, name: str, missing_ok: bool = False) -> bool:
        """Delete a schedule: it fires nothing more. Raises NotFound unless it existed or missing_ok."""
        resp = self._call(self._scheduler.DeleteSchedule, scheduler_pb2.DeleteScheduleRequest(id=name))
        if not resp.deleted and not missing_ok:
            raise NotFound(f"no schedule with id {name}", "NOT_FOUND")
        return bool(resp.deleted)

    def pause_schedule(self, name: str, paused: bool = True) -> Schedule:
        req = scheduler_pb2.PauseScheduleRequest(id=name, paused=paused)
        return Schedule.from_proto(self._call(self._scheduler.PauseSchedule, req))

    def resume_schedule(self, name: str) -> Schedule:
        """Resume a paused schedule from its next future occurrence (paused ones are not made up)."""
        return self.pause_schedule(name, paused=False)

    def _call(self, method: Any, req: Any) -> Any:
        try:
            return method(req)
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None


class AsyncScheduleMethods:
    """The schedule methods of AsyncClient: those of Client, awaited."""

    settings: ClientSettings
    _scheduler: scheduler_pb2_grpc.SchedulerStub

    async def put_schedule(
        self,
        name: str,
        task_name: str,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        keep_paused: bool = False,
        **options: Any,
    ) -> Schedule:
        s = schedule_proto(name, task_name, args, kwargs, **options)
        req = scheduler_pb2.PutScheduleRequest(schedule=s, keep_paused=keep_paused)
        return Schedule.from_proto(await self._acall(self._scheduler.PutSchedule, req))

    async def get_schedule(self, name: str) -> Schedule:
        req = scheduler_pb2.GetScheduleRequest(id=name)
        return Schedule.from_proto(await self._acall(self._scheduler.GetSchedule, req))

    async def list_schedules(self) -> list[Schedule]:
        resp = await self._acall(self._scheduler.ListSchedules, scheduler_pb2.ListSchedulesRequest())
        return [Schedule.from_proto(s) for s in resp.schedules]

    async def delete_schedule(self, name: str, missing_ok: bool = False) -> bool:
        resp = await self._acall(self._scheduler.DeleteSchedule, scheduler_pb2.DeleteScheduleRequest(id=name))
        if not resp.deleted and not missing_ok:
            raise NotFound(f"no schedule with id {name}", "NOT_FOUND")
        return bool(resp.deleted)

    async def pause_schedule(self, name: str, paused: bool = True) -> Schedule:
        req = scheduler_pb2.PauseScheduleRequest(id=name, paused=paused)
        return Schedule.from_proto(await self._acall(self._scheduler.PauseSchedule, req))

    async def resume_schedule(self, name: str) -> Schedule:
        return await self.pause_schedule(name, paused=False)

    async def _acall(self, method: Any, req: Any) -> Any:
        try:
            return await method(req)
        except grpc.RpcError as exc:
            raise translate(exc, self.settings.scheduler()) from None
