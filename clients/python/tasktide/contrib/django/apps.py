"""The Django app: add "tasktide.contrib.django" to INSTALLED_APPS."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


def _settings_changed(*, setting: str, **_: object) -> None:
    if setting == "TASKTIDE":
        from tasktide.contrib.django.conf import reset

        reset()


class TasktideConfig(AppConfig):
    name = "tasktide.contrib.django"
    label = "tasktide"
    verbose_name = "tasktide"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tasktide.contrib.django.conf import get_conf

        get_conf()  # a bad TASKTIDE setting fails at start-up, with its message
        setting_changed.connect(_settings_changed, dispatch_uid="tasktide-settings")
