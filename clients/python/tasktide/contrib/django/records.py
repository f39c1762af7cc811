"""Writing and reading the TaskRecord index (only when the app is in INSTALLED_APPS)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.apps import apps

from tasktide._client import Client
from tasktide.contrib.django.platform import states

if TYPE_CHECKING:
    from tasktide.contrib.django.models import TaskRecord

APP = "tasktide.contrib.django"


def installed() -> bool:
    return apps.is_installed(APP)


def save(
    result_id: str,
    task_id: str,
    *,
    name: str,
    backend: str,
    queue: str,
    priority: int,
    run_after: dt.datetime | None,
    enqueued_at: dt.datetime,
) -> None:
    from tasktide.contrib.django.models import TaskRecord

    TaskRecord.objects.update_or_create(
        id=result_id,
        defaults={
            "task_id": task_id,
            "name": name,
            "backend": backend,
            "queue": queue,
            "priority": priority,
            "run_after": run_after,
            "enqueued_at": enqueued_at,
        },
    )


def platform_id(result_id: str) -> str | None:
    """The platform's task id for a result id, if the index has it."""
    from tasktide.contrib.django.models import TaskRecord

    return TaskRecord.objects.filter(id=result_id).values_list("task_id", flat=True).first() or None


def refresh(client: Client, records: Sequence[TaskRecord]) -> int:
    """Read the current state of `records` from the platform and store it; returns how many changed."""
    from tasktide.contrib.django.models import TaskRecord

    now = dt.datetime.now(dt.UTC)
    current = states(client, [r.task_id for r in records])
    changed = []
    for r in records:
        state = current.get(r.task_id)
        if state is not None and state.name != r.state:
            r.state = state.name
            r.checked_at = now
            changed.append(r)
    TaskRecord.objects.bulk_update(changed, ["state", "checked_at"])
    return len(changed)
