"""Tests run against real servers: a Redis started by a fixture and the tasktide services on loopback."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tasktide_services.common import grpc_core  # imports no grpc

# The services started in this process serve as the `tasktide` command's do, with gRPC core's
# polling I/O manager (common/grpc_core.py; a value set in the environment is kept). gRPC reads the
# variable when it is first imported, which must come after this.
if "grpc" in sys.modules:
    raise pytest.UsageError("grpc was imported before tests/conftest.py could set GRPC_EXPERIMENTS")
os.environ.setdefault(grpc_core.VARIABLE, grpc_core.EXPERIMENTS)

if TYPE_CHECKING:  # imported at run time by pytest_plugins, after assertion rewriting is set up
    from tasktide_services.common.settings import ServerSettings
    from tasktide_services.testing import PlatformThread

ROOT = Path(__file__).resolve().parent.parent
UNIT = Path(__file__).resolve().parent / "unit"

pytest_plugins = ["tasktide_services.testing", "pytester"]


# How the session's services run: "one" (the three in one process, calls between them direct) or
# "split" (each its own process, calling the others over gRPC, as in production). `make test-split`
# runs the whole suite the second way.
ARRANGEMENT = os.environ.get("TASKTIDE_TEST_SERVICES", "one")
if ARRANGEMENT not in ("one", "split"):
    raise pytest.UsageError(f"TASKTIDE_TEST_SERVICES must be 'one' or 'split', not {ARRANGEMENT!r}")


SERVER_FIXTURES = frozenset({"redis_server", "server_settings", "platform", "client", "python_worker"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/unit is marked `unit` (before `-m` selects): pure tests that start no
    server, so `pytest -m unit` runs in seconds. A unit test asking for a server is refused. With the
    services split, tests of their in-process cooperation are deselected (counted, not skipped)."""
    if ARRANGEMENT == "split":
        kept = [item for item in items if item.get_closest_marker("one_process") is None]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in kept])
            items[:] = kept
    for item in items:
        if UNIT in item.path.parents:
            item.add_marker(pytest.mark.unit)
            servers = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if servers:
                raise pytest.UsageError(f"{item.nodeid} is under tests/unit but uses {sorted(servers)}")


def require_tool(name: str) -> str:
    """The path of `name`; skips when it is missing, except under CI=true where that fails."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


FAULT_ROWS: list[dict[str, object]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """The fault suite's figures travel in its test reports (so they reach this process from
    pytest-xdist's workers too); they are written to reports/faults.md at the end."""
    if report.when == "call":
        FAULT_ROWS.extend(
            value for key, value in report.user_properties if key == "fault_figures" and isinstance(value, dict)
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_ROWS:
        return
    from tests.faults.figures import Figures, table

    text = table([Figures(**row) for row in FAULT_ROWS])  # type: ignore[arg-type]
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "faults.md").write_text(text)
    terminalreporter.section("fault suite figures (reports/faults.md)")
    for line in text.splitlines():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def platform(server_settings: ServerSettings) -> Iterator[object]:
    """The session's services, on the session's Redis (or cluster), in the arrangement
    TASKTIDE_TEST_SERVICES names."""
    from tasktide_services.testing import PlatformThread

    if ARRANGEMENT == "one":
        with PlatformThread(server_settings) as p:
            yield p
        return
    from tests.processes import session_split_platform

    with session_split_platform(server_settings.redis_url) as split:
        yield split


@pytest.fixture(scope="module")
def local(server_settings: ServerSettings) -> Iterator[object]:
    """The services in this process whatever TASKTIDE_TEST_SERVICES names, for the tests that
    reach into them (a module's own, on the session's Redis)."""
    from tasktide_services.testing import PlatformThread

    with PlatformThread(server_settings) as p:
        yield p


@pytest.fixture()
def python_worker(platform: PlatformThread, queue_name: str) -> Iterator[str]:
    """A Python worker (tests/tasks_app.py) consuming `queue_name`."""
    from tasktide_services.testing import spawn

    proc = spawn(
        "worker", "tests.tasks_app:app", "--queues", queue_name, env={"TASKTIDE_ADDRESS": platform.address}, cwd=ROOT
    )
    try:
        yield queue_name
    finally:
        proc.terminate()
        proc.wait(20)
