"""The footprint rows of tasktide's other kinds of task: delayed, retried, scheduled, in a workflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def extra_rows(system: Any, url: str, n: int, log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    return {}
