"""`tasktide dashboard` against real services and a real worker: its JSON API, its actions over HTTP,
and its pages as rendered by headless Chromium after their scripts ran."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar
from typing import Any

import pytest

import tasktide
from tasktide import TaskState
from tasktide_services.testing import eventually, run_worker_thread, service_env, spawn_listening
from tests.conftest import require_tool
from tests.tasks_app import app


class Web:
    """One browser-like visitor of the dashboard over HTTP: a cookie jar, no redirects followed."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    def __init__(self, base: str, tls: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.jar = CookieJar()
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar), self._NoRedirect]
        if tls is not None:
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        self.opener = urllib.request.build_opener(*handlers)

    def raw(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, str]:
        """(status, response headers, body text)."""
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def json(self, method: str, path: str, body: Any = None, csrf: str | None = None) -> tuple[int, Any]:
        headers = {"content-type": "application/json"}
        if csrf is not None:
            headers["x-tasktide-csrf"] = csrf
        data = None if body is None else json.dumps(body).encode()
        status, _, text = self.raw(method, path, data, headers)
        return status, json.loads(text)

    def csrf(self) -> str:
        status, body = self.json("GET", "/api/session")
        assert status == 200, body
        return str(body["csrf"])

    def act(self, path: str, body: Any = None) -> tuple[int, Any]:
        """A POST the way the dashboard's pages send it: with the session's CSRF token."""
        return self.json("POST", path, body if body is not None else {}, csrf=self.csrf())

    def form(self, path: str, fields: dict[str, str]) -> tuple[int, Any, str]:
        data = urllib.parse.urlencode(fields).encode()
        return self.raw("POST", path, data, {"content-type": "application/x-www-form-urlencoded"})


_WEB: dict[str, Web] = {}


def http(method: str, url: str, body: Any = None, action: bool = True) -> tuple[int, Any]:
    """A JSON call on the open (loopback, no login) dashboard at `url`; a POST carries the CSRF token
    unless `action` is False."""
    parts = urllib.parse.urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    web = _WEB.setdefault(base, Web(base))
    if method == "POST":
        return web.act(parts.path, body) if action else web.json("POST", parts.path, body or {})
    return web.json(method, parts.path, body)


def until(fn: Callable[[], Any], timeout: float = 15.0) -> Any:
    return eventually(fn, timeout=timeout, interval=0.1)


@pytest.fixture(scope="module")
def dashboard(platform) -> Iterator[str]:
    proc, listening, _ = spawn_listening(
        "dashboard", "--address", platform.address, listen="--listen", env=service_env(platform.address)
    )
    base = f"http://{listening}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        try:
            return http("GET", f"{base}/api/overview")[0] == 200
        except OSError:
            return False

    try:
        until(up, timeout=20)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def submit(client: tasktide.Client, name: str, *args: Any, **opts: Any) -> tasktide.TaskHandle:
    return client.submit_spec(app.tasks[name].spec(list(args), **opts))


def queue_row(base: str, queue: str) -> dict[str, Any] | None:
    status, body = http("GET", f"{base}/api/overview")
    assert status == 200, body
    return next((q for q in body["queues"] if q["queue"] == queue), None)


def test_api_reports_queues_workers_and_tasks(platform, client, dashboard):
    q = f"dash-{uuid.uuid4().hex[:8]}"
    with run_worker_thread(app, platform.address, queues=(q,), concurrency=2):
        ok = submit(client, "t.add", 2, 3, queue=q)
        bad = submit(client, "t.boom", "dashboard saw this", queue=q)
        assert ok.get(timeout=15) == 5
        with pytest.raises(tasktide.TaskFailed):
            bad.get(timeout=15)

        def worker_listed() -> Any:
            body = http("GET", f"{dashboard}/api/overview")[1]
            return [w for w in body["workers"] if q in w["queues"]]

        (worker,) = until(worker_listed)
        assert worker["concurrency"] == 2 and worker["language"] == "python" and worker["last_seen"]
        row = until(lambda: queue_row(dashboard, q))
        assert row["consumers"] == 1 and row["paused"] is False and row["dead"] == 0

        status, task = http("GET", f"{dashboard}/api/tasks/{ok.id}")
        assert status == 200, task
        assert (task["state"], task["name"], task["result"], task["args"]) == ("SUCCEEDED", "t.add", 5, [2, 3])
        assert task["queue"] == q and task["attempts"] == 1 and task["worker_id"] == worker["worker_id"]
        assert [e["state"] for e in task["events"]][-1] == "SUCCEEDED"
        assert "RUNNING" in [e["state"] for e in task["events"]]

        status, failed = http("GET", f"{dashboard}/api/tasks/{bad.id}")
        assert failed["state"] == "FAILED" and failed["result"] is None
        assert "ValueError" in failed["error"]["type"] and failed["error"]["message"] == "dashboard saw this"
        assert "raise ValueError" in failed["error"]["traceback"]

        recent = http("GET", f"{dashboard}/api/overview")[1]["recent"]
        assert {ok.id, bad.id} <= {t["id"] for t in recent}

    assert http("GET", f"{dashboard}/api/tasks/{uuid.uuid4().hex}")[0] == 404
    assert http("GET", f"{dashboard}/api/tasks/not-an-id")[0] == 400


def test_actions_over_http(platform, client, dashboard):
    q = f"dash-{uuid.uuid4().hex[:8]}"
    assert http("POST", f"{dashboard}/api/queues/{q}/pause", action=False)[0] == 403
    assert http("POST", f"{dashboard}/api/queues/{q}/pause") == (200, {"queue": q, "paused": True})
    assert until(lambda: (queue_row(dashboard, q) or {}).get("paused"))
    assert [s.paused for s in client.queue_stats() if s.queue == q] == [True]
    assert http("POST", f"{dashboard}/api/queues/{q}/resume")[0] == 200
    assert [s.paused for s in client.queue_stats() if s.queue == q] == [False]

    delayed = submit(client, "t.add", 1, 1, queue=q, countdown=600)
    status, body = http("POST", f"{dashboard}/api/tasks/{delayed.id}/cancel")
    assert status == 200 and body["state"] == "CANCELLED"
    assert until(lambda: delayed.status() is TaskState.CANCELLED)

    with run_worker_thread(app, platform.address, queues=(q,)):
        dead = submit(client, "t.always_fails", "gone", queue=q)
        with pytest.raises(tasktide.TaskDead):
            dead.get(timeout=15)
    status, body = http("GET", f"{dashboard}/api/dead/{q}")
    assert status == 200 and [t["id"] for t in body["tasks"]] == [dead.id]
    assert body["tasks"][0]["name"] == "t.always_fails"
    assert http("POST", f"{dashboard}/api/dead/{q}/requeue", {"ids": [dead.id]}) == (200, {"queue": q, "requeued": 1})
    row = until(lambda: (r := queue_row(dashboard, q)) and r["dead"] == 0 and r["ready"] == 1 and r)
    assert row["consumers"] == 0
    assert http("GET", f"{dashboard}/api/dead/{q}")[1]["tasks"] == []

    worker_id = f"dash-worker/{q}"  # a slash in the id too

    def listed() -> bool:
        return worker_id in [x["worker_id"] for x in http("GET", f"{dashboard}/api/overview")[1]["workers"]]

    with run_worker_thread(app, platform.address, queues=(q,), worker_id=worker_id):
        until(listed)
        path = f"{dashboard}/api/workers/{urllib.parse.quote(worker_id, safe='')}/drain"
        assert http("POST", path, action=False)[0] == 403
        assert http("POST", path) == (200, {"worker": worker_id, "sessions": 1})
        # The registry's Drain reached it: it ends its session (as on SIGTERM) before the block ends.
        assert until(lambda: not listed())
    status, body = http("POST", path)
    assert status == 404 and "is connected" in body["error"]


def live_update_landed(dom: str) -> bool:
    return 'data-live="ok"' in dom


def live_update_ended(dom: str) -> bool:
    """The page's first live update ran, whether it landed or failed (a task that does not exist)."""
    return "data-live=" in dom


def chromium_dom(url: str, tmp_path, ready: Callable[[str], bool] = live_update_landed) -> str:
    """The DOM of `url` after its scripts ran; loaded again (up to a deadline) until `ready` holds
    (by default: the live update landed). A page with no live update passes what it waits for."""
    exe = require_tool("chromium")
    last = ""

    def live() -> bool:
        nonlocal last
        profile = tmp_path / f"profile-{uuid.uuid4().hex[:6]}"
        out = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"chromium exited with {out.returncode}: {out.stderr[-2000:]}")
        last = out.stdout
        return ready(last)

    try:
        eventually(live, timeout=30, interval=0.1)
    except AssertionError:
        pass  # the caller's assertions on the DOM say what is missing
    return last


def test_browser_renders_overview_and_task_page(platform, client, dashboard, tmp_path):
    q = f"dash-{uuid.uuid4().hex[:8]}"
    with run_worker_thread(app, platform.address, queues=(q,)):
        bad = submit(client, "t.boom", "shown in the browser", queue=q)
        with pytest.raises(tasktide.TaskFailed):
            bad.get(timeout=15)
        until(lambda: queue_row(dashboard, q))
        overview = chromium_dom(f"{dashboard}/", tmp_path)
    assert 'data-live="ok"' in overview, overview[-3000:]
    assert f'data-queue="{q}"' in overview
    assert "loading…" not in overview

    page = chromium_dom(f"{dashboard}/tasks/{bad.id}", tmp_path)
    assert 'data-live="ok"' in page, page[-3000:]
    assert '<span class="state FAILED">FAILED</span>' in page
    assert "shown in the browser" in page and "Traceback" in page
    assert "t.boom" in page


@pytest.mark.parametrize("address", ["nowhere", "127.0.0.1:port", "unix:", "unix"])
def test_a_malformed_platform_address_is_refused_at_start(address: str) -> None:
    """--address is HOST:PORT or unix:PATH (how services run apart in one host are reached)."""
    out = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "dashboard", "--address", address, "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert f"--address must be HOST:PORT, got {address!r}" in out.stderr
