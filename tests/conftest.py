"""Tests run against real servers: a Redis started by a fixture and the tasktide services on loopback."""

from __future__ import annotations

import os
import shutil

import pytest

pytest_plugins = ["tasktide_services.testing"]


def require_tool(name: str) -> str:
    """The path of `name`; skips when it is missing, except under CI=true where that fails."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} is not installed")
    return path
