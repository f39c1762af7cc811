"""Admin pages for task results. Read-only: the platform is the source of truth, so each page reads it
over gRPC (the list refreshes the states it filters by, the detail page shows the live result)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from tasktide._client import Client
from tasktide._exceptions import NotFound, TasktideError
from tasktide.contrib.django import clients, platform, records
from tasktide.contrib.django.conf import get_conf
from tasktide.contrib.django.models import FINAL_STATES, TaskRecord
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


# Schedules: the platform has no schedule API yet. When it has one, a read-only ScheduleAdmin belongs
# here, built like TaskRecordAdmin: a small Django-side index for lists and filters, and every page
# reading the schedule itself from the platform (ReadOnlyPlatformAdmin for pages the platform owns).
