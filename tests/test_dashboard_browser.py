"""The dashboard in a real browser (headless Chromium driven over the DevTools protocol): logging in
through the login form, pages that act with the session's CSRF token, a viewer offered no actions
and refused them, and markup in a task's arguments shown as text without running."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tasktide
from tasktide import ClientSettings
from tasktide_services.dashboard.credentials import TokenHooks, static
from tests import test_dashboard_login as login_tests
from tests.conftest import require_tool
from tests.tasks_app import app
from tests.test_dashboard_login import PASSWORDS, Site

# The platform that checks tokens and the dashboard in front of it, as in test_dashboard_login.py.
revoked, secured, site = login_tests.revoked, login_tests.secured, login_tests.site

RUN = "window.__pwned=1"
PAYLOAD = f"<script>{RUN}</script><img src=x onerror={RUN}><svg onload={RUN}></svg>"


class Chromium:
    def __init__(self, exe: str, profile: Path) -> None:
        to_child_r, self._to_child = _high(os.pipe())
        self._from_child, from_child_w = _high(os.pipe())
        # The child reads commands from its fd 3 and writes replies to its fd 4 (set up by the shell).
        redirect = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                redirect,
                "bash",
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(to_child_r, from_child_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.session = ""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child, 65536)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (awaited when it is a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait(self, expression: str, timeout: float = 20.0) -> Any:
        """Evaluates `expression` until it is truthy (pages load and update on their own time)."""
        return until(lambda: self._try(expression), timeout)

    def _try(self, expression: str) -> Any:
        try:
            return self.evaluate(expression)
        except RuntimeError:  # the page is between two documents
            return None

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._to_child)
        os.close(self._from_child)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved to descriptors of 10 and up, clear of the 3 and 4 the child gets."""
    moved = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return moved[0], moved[1]


def until(fn: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value {value!r}")
        time.sleep(0.1)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Chromium]:
    b = Chromium(require_tool("chromium"), tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def client_of(site: Site, role: str) -> tasktide.Client:
    settings = ClientSettings.from_env({}, address=site.platform.address)
    return tasktide.Client(settings=settings, hooks=TokenHooks(static(site.token(role))))


def log_in(browser: Chromium, site: Site, path: str, fields: dict[str, str]) -> None:
    """Opens `path`, lands on the login page, fills the form in and submits it."""
    browser.goto(site.base + path)
    form = "token-login" if "token" in fields else "password-login"
    browser.wait(f"location.pathname === '/login' && !!document.getElementById('{form}')")
    assigns = "".join(f"f.elements[{json.dumps(k)}].value = {json.dumps(v)};" for k, v in fields.items())
    browser.evaluate(f"(() => {{ const f = document.getElementById('{form}'); {assigns} f.submit(); }})()")
    browser.wait(f"location.pathname === {json.dumps(path)} && document.body.dataset.live === 'ok'")


def test_admin_logs_in_sees_arguments_as_text_and_acts(site: Site, browser: Chromium) -> None:
    q = f"dash-{uuid.uuid4().hex[:8]}"
    with client_of(site, "admin") as admin:
        task = admin.submit_spec(app.tasks["t.echo"].spec([PAYLOAD], queue=q, countdown=600))
        log_in(browser, site, f"/tasks/{task.id}", {"token": site.token("admin")})
        browser.wait("document.getElementById('f-args').textContent !== ''")
        assert browser.evaluate("document.getElementById('f-args').textContent") == json.dumps([PAYLOAD])
        assert browser.evaluate("document.querySelectorAll('#task img, #task svg, main script').length") == 0
        assert browser.evaluate("typeof window.__pwned") == "undefined"

        # the page's own button sends the action with the session's CSRF token
        admin.pause_queue(q, True)
        browser.goto(f"{site.base}/")
        button = f"document.querySelector('tr[data-queue={json.dumps(q)}] button[data-post]')"
        assert browser.wait(f"{button}?.textContent") == "Resume"
        browser.evaluate(f"{button}.click()")
        until(lambda: [s.paused for s in admin.queue_stats() if s.queue == q] == [False], 20)
        # the same call from the page without the token is refused
        status = browser.evaluate(
            f"fetch('/api/queues/{q}/pause', {{method: 'POST', body: '{{}}'}}).then(r => r.status)"
        )
        assert status == 403
        assert [s.paused for s in admin.queue_stats() if s.queue == q] == [False]
        admin.cancel(task.id)


def test_viewer_is_offered_no_action_and_refused_one(site: Site, browser: Chromium) -> None:
    q = f"dash-{uuid.uuid4().hex[:8]}"
    with client_of(site, "admin") as admin:
        admin.pause_queue(q, True)
        log_in(browser, site, "/", {"username": "vic", "password": PASSWORDS["vic"]})
        row = f"document.querySelector('tr[data-queue={json.dumps(q)}]')"
        browser.wait(f"!!{row}")
        assert browser.evaluate(f"{row}.querySelector('button[data-post]').offsetParent === null")
        assert browser.evaluate("document.getElementById('who').textContent") == "vic (viewer)"
        status = browser.evaluate(
            f"""fetch('/api/queues/{q}/resume', {{method: 'POST', body: '{{}}',
                headers: {{'x-tasktide-csrf': document.querySelector('meta[name=csrf-token]').content}}}})
              .then(r => r.status)"""
        )
        assert status == 403
        assert [s.paused for s in admin.queue_stats() if s.queue == q] == [True]
        admin.pause_queue(q, False)


def test_logout_button_returns_to_the_login(site: Site, browser: Chromium) -> None:
    log_in(browser, site, "/schedules", {"username": "ada", "password": PASSWORDS["ada"]})
    browser.evaluate("document.querySelector('form.logout').submit()")
    browser.wait("location.pathname === '/login' && !!document.getElementById('password-login')")
    browser.goto(f"{site.base}/schedules")
    browser.wait("location.pathname === '/login' && !!document.getElementById('password-login')")
