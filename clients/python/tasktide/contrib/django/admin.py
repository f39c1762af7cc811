"""Admin pages for task results and periodic schedules. Read-only: the platform is the source of truth,
so each page reads it over gRPC (the results list refreshes the states it filters by, a result's page
shows the live result, the schedule pages read the schedules themselves)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from tasktide._client import Client
from tasktide._exceptions import NotFound, TasktideError
from tasktide._schedules import Schedule
from tasktide.contrib.django import clients, platform, records, schedules
from tasktide.contrib.django.conf import get_conf
from tasktide.contrib.django.models import FINAL_STATES, PeriodicSchedule, TaskRecord
from tasktide.contrib.django.results import when

# How many unfinished tasks one list page asks the platform about, newest first.
REFRESH_LIMIT = 1000


def client_for(backend_alias: str) -> Client:
    """The client of the backend that sent a task, or the project's default platform."""
    from tasktide.contrib.django.backend import TasktideBackend
    from tasktide.contrib.django.compat import task_backends

    try:
        backend = task_backends[backend_alias]
    except Exception:  # noqa: BLE001 - a backend since removed from TASKS: use the default platform
        backend = None
    if isinstance(backend, TasktideBackend):
        return backend.client
    return clients.sync_client(get_conf().client)


def _pre(value: Any) -> str:
    return format_html("<pre>{}</pre>", value)


class ReadOnlyPlatformAdmin(admin.ModelAdmin):
    """Shows what the platform owns; nothing can be added, changed or deleted from here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaskRecord)
class TaskRecordAdmin(ReadOnlyPlatformAdmin):
    list_display = ("name", "state", "queue", "priority", "enqueued_at", "checked_at", "id")
    list_filter = ("state", "name", "queue")
    search_fields = ("=id", "=task_id", "name")
    fieldsets = (
        (None, {"fields": ("id", "task_id", "name", "backend", "queue", "priority", "run_after", "enqueued_at")}),
        (
            "On the platform",
            {"fields": ("live_state", "attempts", "workers", "updated", "arguments", "return_value", "error")},
        ),
    )
    readonly_fields = (
        "id",
        "task_id",
        "name",
        "backend",
        "queue",
        "priority",
        "run_after",
        "enqueued_at",
        "live_state",
        "attempts",
        "workers",
        "updated",
        "arguments",
        "return_value",
        "error",
    )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        pending = TaskRecord.objects.exclude(state__in=FINAL_STATES).exclude(task_id="")[:REFRESH_LIMIT]
        by_backend: dict[str, list[TaskRecord]] = defaultdict(list)
        for r in pending:
            by_backend[r.backend].append(r)
        try:
            for alias, group in by_backend.items():
                records.refresh(client_for(alias), group)
        except TasktideError as exc:
            messages.warning(request, f"The tasktide platform could not be read ({exc}); states are as last read.")
        return super().changelist_view(request, extra_context)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> TaskRecord | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.snapshot = None
            obj.problem = ""
            if not obj.task_id:
                obj.problem = "not sent yet"
            else:
                try:
                    obj.snapshot = platform.read(client_for(obj.backend), obj.task_id)
                except NotFound:
                    obj.problem = "the platform no longer has this task (its result expired)"
                except TasktideError as exc:
                    obj.problem = f"the platform could not be read: {exc}"
        return obj

    @staticmethod
    def _snap(obj: TaskRecord) -> platform.Snapshot | None:
        return obj.snapshot

    @admin.display(description="state")
    def live_state(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        return snap.state.name if snap else obj.problem or obj.state

    @admin.display(description="attempts")
    def attempts(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        return str(snap.attempt + 1) if snap else "-"

    @admin.display(description="workers")
    def workers(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        if not snap:
            return "-"
        ids = [e.worker_id for e in snap.events if e.worker_id] or [snap.worker_id]
        return ", ".join(dict.fromkeys(i for i in ids if i)) or "-"

    @admin.display(description="last change")
    def updated(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        moment = when(snap.updated_ms) if snap else None
        return moment.isoformat(timespec="seconds") if moment else "-"

    @admin.display(description="arguments")
    def arguments(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        if not snap:
            return "-"
        return _pre(json.dumps({"args": snap.args, "kwargs": snap.kwargs}, indent=2, ensure_ascii=False))

    @admin.display(description="return value")
    def return_value(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        if not snap or not snap.state.is_final or snap.error is not None:
            return "-"
        return _pre(json.dumps(snap.result, indent=2, ensure_ascii=False))

    @admin.display(description="error")
    def error(self, obj: TaskRecord) -> str:
        snap = self._snap(obj)
        if not snap or snap.error is None:
            return "-"
        return _pre(f"{snap.error.type}: {snap.error.message}\n\n{snap.error.traceback}")


@admin.register(PeriodicSchedule)
class PeriodicScheduleAdmin(ReadOnlyPlatformAdmin):
    """Periodic schedules, read from the platform on every page (there is no table behind the model).
    The list searches by name or task (?q=) and filters by paused (?paused=1 or 0); a schedule's page
    shows everything the platform holds for it. Staff need the *view periodic schedule* permission."""

    def get_urls(self) -> list[URLPattern]:
        # Only the list and a schedule's page: no add, delete or history pages (they read the table).
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name=f"{info}_changelist"),
            path("<path:object_id>/change/", self.admin_site.admin_view(self.change_view), name=f"{info}_change"),
        ]

    def _client(self) -> Client:
        return clients.sync_client(get_conf().client)

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        query, paused = request.GET.get("q", ""), request.GET.get("paused", "")
        found: list[Schedule] = []
        problem = ""
        try:
            found = self._client().list_schedules()
        except TasktideError as exc:
            problem = f"The tasktide platform could not be read: {exc}"
        rows = [(s, schedules.describe(s), schedules.iso(s.next_run), schedules.iso(s.last_run))
                for s in schedules.matching(found, query, paused)]  # fmt: skip
        context = {
            **self._context(request, "Periodic schedules"),
            "rows": rows,
            "total": len(found),
            "query": query,
            "paused": paused,
            "problem": problem,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/tasktide/periodicschedule/list.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        name = unquote(object_id)
        try:
            s = self._client().get_schedule(name)
        except NotFound:
            raise Http404(f"the platform has no schedule named {name!r}") from None
        except TasktideError as exc:
            messages.warning(request, f"The tasktide platform could not be read ({exc}).")
            return HttpResponseRedirect(reverse("admin:tasktide_periodicschedule_changelist"))
        fields = [
            ("task", s.task_name),
            ("runs", schedules.describe(s)),
            ("queue", s.queue or "-"),
            ("paused", "yes" if s.paused else "no"),
            ("next run", schedules.iso(s.next_run)),
            ("last run", schedules.iso(s.last_run)),
            ("times fired", str(s.runs)),
            ("last task id", s.last_task_id or "-"),
        ]
        arguments = json.dumps({"args": s.args, "kwargs": s.kwargs}, indent=2, ensure_ascii=False, default=str)
        context = {
            **self._context(request, f"Schedule {s.name}"),
            "schedule": s,
            "fields": fields,
            "arguments": arguments,
        }
        return TemplateResponse(request, "admin/tasktide/periodicschedule/detail.html", context)
