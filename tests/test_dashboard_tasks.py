"""The dashboard's tasks page over ListTasks: after 1,000 tasks of mixed outcomes (tests/test_list_tasks.py's
platform and tasks), filtering by FAILED shows exactly the failed ones, newest first, page after page;
the page as headless Chromium renders it, with a screenshot kept as a test artefact."""

from __future__ import annotations

import os
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasktide import Client
from tasktide_services.testing import PlatformThread, eventually, spawn_listening
from tests.conftest import require_tool
from tests.test_dashboard import Web, chromium_dom
from tests.test_list_tasks import own_client, own_platform, ran

__all__ = ["own_client", "own_platform", "ran"]  # fixtures shared with test_list_tasks.py

# Screenshots go to $TASKTIDE_TEST_ARTEFACTS when set (CI keeps that folder), else to the test's tmp_path.


@pytest.fixture(scope="module")
def board(own_platform: PlatformThread) -> Iterator[str]:
    proc, listening, _ = spawn_listening("dashboard", "--address", own_platform.address, listen="--listen")
    base = f"http://{listening}"
    web = Web(base)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        try:
            return web.json("GET", "/api/overview")[0] == 200
        except OSError:
            return False

    try:
        eventually(up, timeout=20, interval=0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _api(base: str, **query: str) -> tuple[int, Any]:
    return Web(base).json("GET", "/api/tasks?" + urllib.parse.urlencode(query))


def test_the_api_pages_through_exactly_the_failed_ones_newest_first(ran, board: str) -> None:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, body = _api(board, state="FAILED", cursor=cursor)
        assert status == 200, body
        rows += body["tasks"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(ran["failed"]) and set(ids) == ran["failed"]
    assert all(r["state"] == "FAILED" and r["error"]["type"] == "ValueError" for r in rows)
    updated = [r["updated"] for r in rows]
    assert updated == sorted(updated, reverse=True)
    assert body["counts"] == {"SUCCEEDED": len(ran["ok"]), "FAILED": len(ran["failed"])}
    assert _api(board, state="NOPE")[0] == 400
    assert _api(board, cursor="garbage!")[0] == 400


def test_the_page_in_a_browser_shows_the_failed_ones(ran, board: str, own_client: Client, tmp_path: Path) -> None:
    first = [r.task_id for r in own_client.list_tasks("FAILED", limit=50).tasks]
    url = f"{board}/tasks?state=FAILED"
    dom = chromium_dom(url, tmp_path)
    assert 'data-live="ok"' in dom, dom[-3000:]
    assert "loading…" not in dom
    rows = dom.split('<tr data-task="')[1:]
    shown = [part.split('"', 1)[0] for part in rows if not part.startswith("${")]  # not the script's template
    assert shown == first
    assert dom.count('data-state="FAILED"') == len(first) and 'data-state="SUCCEEDED"' not in dom
    assert f'href="/tasks/{first[0]}"' in dom  # each row links to its task page
    assert 'id="next"' in dom and "cursor=" in dom  # more than one page of failed tasks
    assert 'data-name="lt.boom"' in dom and 'href="/tasks?name=lt.boom"' in dom  # the counts by task name
    folder = Path(os.environ.get("TASKTIDE_TEST_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "dashboard-tasks-failed.png"
    _screenshot(url, shot, tmp_path)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def _screenshot(url: str, path: Path, tmp_path: Path) -> None:
    exe = require_tool("chromium")
    out = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-sync",
            f"--user-data-dir={tmp_path / f'shot-{uuid.uuid4().hex[:6]}'}",
            "--virtual-time-budget=3000",
            "--window-size=1400,1000",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
