"""Markup in what tasks carry (arguments, error messages, tracebacks, schedule arguments) is shown by
the dashboard as text in headless Chromium: the DOM holds it as text, and none of it runs."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

import tasktide
from tasktide_services.dashboard.pages import ENVIRONMENT
from tasktide_services.testing import run_worker_thread
from tests.tasks_app import app
from tests.test_dashboard import chromium_dom, dashboard, live_update_ended, submit  # noqa: F401 (dashboard is a fixture)

# Each part would set window.__pwned and mark the page if it ran.
RUN = "window.__pwned=1;document.body.setAttribute('data-pwned','1')"
# (attribute values unquoted, so the JSON of the arguments leaves them intact)
PAYLOAD = f"<script>{RUN}</script><img src=x onerror={RUN}><svg onload={RUN}></svg>"


def element(dom: str, element_id: str) -> str:
    """The inner HTML of the element with `element_id` (first match, no nesting of the same tag)."""
    m = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', dom, re.S)
    assert m, f"no #{element_id} in {dom[-2000:]}"
    return m.group(2)


def assert_inert(dom: str) -> None:
    body = re.search(r"<body[^>]*>", dom)
    assert body and "data-pwned" not in body.group(0), body
    assert 'data-live="ok"' in body.group(0), dom[-3000:]
    # the payload's tags never became elements: only the page's own scripts (each with its nonce)
    assert "<img" not in dom and "<svg" not in dom
    assert all("nonce=" in tag for tag in re.findall(r"<script[^>]*>", dom))


def test_task_arguments_errors_and_tracebacks_show_as_text(platform, client, dashboard, tmp_path: Path) -> None:  # noqa: F811
    q = f"dash-{uuid.uuid4().hex[:8]}"
    with run_worker_thread(app, platform.address, queues=(q,)):
        bad = submit(client, "t.boom", PAYLOAD, queue=q)
        with pytest.raises(tasktide.TaskFailed):
            bad.get(timeout=15)
    dom = chromium_dom(f"{dashboard}/tasks/{bad.id}", tmp_path)
    assert_inert(dom)
    escaped = PAYLOAD.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped.replace('"', '\\"') in element(dom, "f-args")  # JSON of the args, as text
    assert escaped in element(dom, "error-type")
    assert escaped in element(dom, "traceback")
    assert "window.__pwned" in dom  # the text is there, for a person to read


def test_schedule_arguments_show_as_text(client: tasktide.Client, dashboard, tmp_path: Path) -> None:  # noqa: F811
    name = f"xss-{uuid.uuid4().hex[:8]}"
    client.put_schedule(name, "t.echo", [PAYLOAD], {"k": PAYLOAD}, every=3600.0, queue=f"dash-{name}", paused=True)
    try:
        dom = chromium_dom(f"{dashboard}/schedules", tmp_path)
        assert_inert(dom)
        row = next(r for r in re.findall(r"<tr>.*?</tr>", dom, re.S) if name in r)
        assert "&lt;script&gt;" in row and "&lt;img src=x onerror=" in row
    finally:
        client.delete_schedule(name, missing_ok=True)


def test_task_page_escapes_the_id_in_its_own_markup(dashboard, tmp_path: Path) -> None:  # noqa: F811
    # a task id from the address is rendered by the template itself: autoescaped
    assert ENVIRONMENT.autoescape is True
    dom = chromium_dom(f"{dashboard}/tasks/%3Cimg%20src%3Dx%20onerror%3D%22{RUN}%22%3E", tmp_path, live_update_ended)
    body = re.search(r"<body[^>]*>", dom)
    assert body and "data-pwned" not in body.group(0)
    assert "<img" not in dom and "&lt;img src=x onerror=" in dom
