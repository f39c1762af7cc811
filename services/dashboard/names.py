"""The task-name page's data: the tasks of one name that changed in the last hour (report.py)."""

from __future__ import annotations

from typing import Any

from tasktide import Client
from tasktide_services.dashboard.report import Reports, report

MAX_NAME = 200  # as the platform's default limit on task names


def name_report(client: Client, name: str) -> dict[str, Any] | None:
    """The page's data for `name`; None when no task of that name changed in the window."""
    body = report(client, name=name)
    return None if body is None else {"name": name, **body}


def names(client: Client) -> Reports:
    return Reports(lambda name: name_report(client, name))
