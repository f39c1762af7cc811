"""tasktide for Django: a backend for Django's tasks framework, a worker command and admin pages.

    INSTALLED_APPS = [..., "tasktide.contrib.django"]
    TASKS = {"default": {"BACKEND": "tasktide.contrib.django.TasktideBackend"}}
    TASKTIDE = {"ADDRESS": "127.0.0.1:50051"}

Works with `django.tasks` (Django 6) and with the `django-tasks` backport (module `django_tasks`,
Django 5.2), whichever is installed. See docs/django.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TasktideBackend", "tasktide_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that listing the app in INSTALLED_APPS loads nothing else.
    if name == "TasktideBackend":
        from tasktide.contrib.django.backend import TasktideBackend

        return TasktideBackend
    if name == "tasktide_app":
        from tasktide.contrib.django.native import tasktide_app

        return tasktide_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
