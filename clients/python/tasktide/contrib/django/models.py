"""The Django-side index of tasks enqueued through the backend. The platform keeps each task's state
and result; `state` here is the last state read from it, kept so the admin can filter by it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

from tasktide._states import TaskState

if TYPE_CHECKING:
    from tasktide.contrib.django.platform import Snapshot

FINAL_STATES = [s.name for s in TaskState if s.is_final]


class TaskRecord(models.Model):
    id = models.CharField("result id", max_length=64, primary_key=True)
    task_id = models.CharField("platform task id", max_length=32, blank=True, db_index=True)
    name = models.CharField(max_length=255, db_index=True)
    backend = models.CharField(max_length=64, default="default")
    queue = models.CharField(max_length=128)
    priority = models.IntegerField(default=0)
    run_after = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(db_index=True)
    state = models.CharField(
        max_length=16,
        choices=[(s.name, s.name.title()) for s in TaskState],
        default=TaskState.QUEUED.name,
        db_index=True,
    )
    checked_at = models.DateTimeField("state read at", null=True, blank=True)

    # Read from the platform when the admin shows one record (admin.py); never stored.
    snapshot: Snapshot | None = None
    problem: str = ""

    class Meta:
        ordering = ["-enqueued_at"]
        verbose_name = "task result"
        verbose_name_plural = "task results"

    def __str__(self) -> str:
        return f"{self.name} {self.id}"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class PeriodicSchedule(models.Model):
    """A periodic schedule on the platform, for the admin's read-only Schedules page. It has no table:
    every page reads the schedules from the platform (admin.py), which is their only store."""

    name = models.CharField(max_length=255, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name = "periodic schedule"
        verbose_name_plural = "periodic schedules"

    def __str__(self) -> str:
        return self.name
