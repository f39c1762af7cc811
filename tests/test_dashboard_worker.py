"""The dashboard's worker page (/workers?id=..., JSON at /api/worker?id=...) against a real platform
and worker: the worker's sessions, the tasks it runs now, the summary of its last hour (counts, run
and wait time, failures by error type, recent runs), in headless Chromium, reached from the Overview
and the Activity page; its Drain button stops the worker; an unknown worker, bad input and markup; a
viewer reads it, a stranger does not."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasktide
from tasktide import TaskState
from tasktide_services.testing import PlatformThread, eventually, run_worker_thread
from tests.test_dashboard import Web
from tests.test_dashboard_browser import Chromium, browser
from tests.test_dashboard_charts import _artefact, board
from tests.test_dashboard_login import PASSWORDS, Site, log_in, revoked, secured, site
from tests.test_list_tasks import own_platform

__all__ = ["board", "browser", "own_platform", "revoked", "secured", "site"]  # fixtures of other modules

WORKER = "w-page"
OK, BAD = 6, 2
MARKUP = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=1>"


def _worker_api(base: str, worker_id: str) -> tuple[int, dict]:
    return Web(base).json("GET", "/api/worker?" + urllib.parse.urlencode({"id": worker_id}))


@pytest.fixture(scope="module")
def busy(own_platform: PlatformThread, board: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Worker WORKER (concurrency 2) after OK tasks that succeeded and BAD that failed, running one
    task that holds until the module ends."""
    release = tmp_path_factory.mktemp("worker-page") / "release"
    app = tasktide.App("wp", address=own_platform.address)

    def double(x: int) -> int:
        return x * 2

    def bad(message: str) -> None:
        raise ValueError(message)

    def hold(path: str) -> str:
        deadline = time.monotonic() + 120
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "released"

    ok, fail, holding = app.task(name="wp.ok")(double), app.task(name="wp.bad")(bad), app.task(name="wp.hold")(hold)
    with run_worker_thread(app, own_platform.address, queues=("wp",), concurrency=2, worker_id=WORKER):
        done = [ok.apply_async(args=(i,), queue="wp") for i in range(OK)]
        assert [h.get(timeout=60) for h in done] == [i * 2 for i in range(OK)]
        failed = [fail.apply_async(args=(f"no {i}",), queue="wp") for i in range(BAD)]
        for h in failed:
            with pytest.raises(tasktide.TaskFailed):
                h.get(timeout=60)
        held = holding.apply_async(args=(str(release),), queue="wp")
        eventually(lambda: held.status() is TaskState.RUNNING, timeout=30)
        try:
            yield {"ok": [h.id for h in done], "bad": [h.id for h in failed], "held": held.id}
        finally:
            release.touch()
            assert held.get(timeout=60) == "released"
    app.close()


def test_the_report_of_a_worker(busy, board: str) -> None:
    # the summary of the last hour comes from the task index: it has every task once their events are indexed
    def whole() -> dict | None:
        status, body = _worker_api(board, WORKER)
        assert status == 200, body
        return body if body["tasks"] and body["tasks"]["summary"]["total"] == OK + BAD + 1 else None

    w = eventually(whole, timeout=30, interval=0.5)
    assert w["worker_id"] == WORKER and w["online"] is True
    [s] = w["sessions"]
    assert (s["worker_id"], s["concurrency"], s["language"], s["queues"]) == (WORKER, 2, "python", ["wp"])
    assert s["pid"] > 0 and s["session_id"] and s["last_seen_ago_s"] >= 0
    [running] = w["running"]
    assert (running["id"], running["name"], running["state"], running["queue"]) == (
        busy["held"],
        "wp.hold",
        "RUNNING",
        "wp",
    )
    assert running["running_s"] is not None and running["running_s"] >= 0 and w["running_more"] is False
    t = w["tasks"]
    assert (t["summary"]["succeeded"], t["summary"]["failed"]) == (OK, BAD)
    assert t["states"] == {"SUCCEEDED": OK, "FAILED": BAD, "RUNNING": 1}
    assert [(e["type"], e["count"]) for e in t["errors"]] == [("ValueError", BAD)]
    assert {r["id"] for r in t["recent"]} == {*busy["ok"], *busy["bad"], busy["held"]}
    assert {r["worker"] for r in t["recent"]} == {WORKER}
    assert sum(t["series"]["succeeded"]) == OK and sum(t["series"]["failed"]) == BAD


def test_the_page_of_a_worker_in_a_browser(busy, board: str, browser: Chromium, tmp_path: Path) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", width=1300, height=1300, deviceScaleFactor=1, mobile=False)
    # reached from the Overview's table of workers
    browser.goto(f"{board}/")
    link = f"document.querySelector('#workers tr[data-worker=\"{WORKER}\"] a')"
    assert browser.wait(f"{link}?.getAttribute('href')") == f"/workers?id={WORKER}"
    browser.evaluate(f"{link}.click()")
    browser.wait("location.pathname === '/workers' && document.body.dataset.found === 'yes'")
    browser.wait(f"document.querySelector('#summary .tile[data-k=\"total\"] .v').textContent === '{OK + BAD + 1}'")
    assert browser.evaluate("document.getElementById('online').textContent") == "online"
    assert browser.evaluate("document.querySelectorAll('#sessions tr[data-session]').length") == 1
    assert browser.evaluate("[...document.querySelectorAll('#running tr[data-task]')].map(r => r.dataset.task)") == [
        busy["held"]
    ]
    tiles = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#summary .tile')].map("
        "t => [t.dataset.k, t.querySelector('.v').textContent]))"
    )
    assert (tiles["succeeded"], tiles["failed"]) == (str(OK), str(BAD)), tiles
    errors = browser.evaluate(
        "[...document.querySelectorAll('#errors tr[data-error]')].map(r => [r.dataset.error, r.cells[1].textContent])"
    )
    assert errors == [["ValueError", str(BAD)]]
    assert browser.evaluate("document.querySelectorAll('#recent tr[data-state=\"SUCCEEDED\"]').length") == OK
    assert browser.evaluate("document.getElementById('list-link').getAttribute('href')") == f"/tasks?worker={WORKER}"
    assert browser.evaluate("!document.getElementById('drain').hidden")
    _artefact(browser, "dashboard-worker.png", tmp_path)
    # and from the Activity page's table of workers
    browser.goto(f"{board}/charts")
    link = f"document.querySelector('#by-worker tr[data-worker=\"{WORKER}\"] a')"
    assert browser.wait(f"{link}?.getAttribute('href')") == f"/workers?id={WORKER}"


def test_the_drain_button_stops_the_worker(own_platform: PlatformThread, board: str, browser: Chromium) -> None:
    worker_id = f"w-drained-{uuid.uuid4().hex[:6]}"
    app = tasktide.App("wd", address=own_platform.address)
    noop = app.task(name="wd.noop")(lambda: "done")
    with run_worker_thread(app, own_platform.address, queues=("wd",), worker_id=worker_id) as w:
        # a task of it in the window: the page has something to show once the worker is gone
        assert noop.apply_async(queue="wd").get(timeout=30) == "done"
        browser.goto(f"{board}/workers?id={worker_id}")
        browser.wait("document.body.dataset.found === 'yes' && !document.getElementById('drain').hidden")
        browser.evaluate("window.confirm = () => true; document.getElementById('drain').click()")
        eventually(lambda: w._stopping.is_set(), timeout=20)  # the registry's Drain reached the worker
    browser.wait("document.getElementById('online').textContent === 'offline'", timeout=30)
    assert browser.evaluate("document.getElementById('drain').hidden")
    assert browser.evaluate("document.querySelector('#sessions tbody').textContent.trim()") == "not connected"
    app.close()


def test_the_pool_buttons_resize_the_worker(own_platform: PlatformThread, board: str, browser: Chromium) -> None:
    worker_id = f"w-sized-{uuid.uuid4().hex[:6]}"
    app = tasktide.App("ws", address=own_platform.address)
    with run_worker_thread(app, own_platform.address, queues=("ws",), worker_id=worker_id, concurrency=2) as w:
        browser.goto(f"{board}/workers?id={worker_id}")
        browser.wait("document.body.dataset.found === 'yes' && document.getElementById('size').textContent === '2'")
        browser.evaluate("document.getElementById('grow').click()")
        browser.wait("document.getElementById('size').textContent === '3'")  # as the worker reported it
        assert w.concurrency == 3
        browser.evaluate("document.getElementById('shrink').click()")
        browser.wait("document.getElementById('size').textContent === '2'")
        assert w.concurrency == 2
        web = Web(board)
        path = f"/api/workers/{worker_id}/resize"
        for body, code, message in (
            ({"concurrency": "3"}, 400, "give the concurrency as a whole number"),
            ({}, 400, "give the concurrency as a whole number"),
            ({"concurrency": 0}, 400, "a concurrency is 1..1024, not 0"),
            ({"concurrency": 1025}, 400, "a concurrency is 1..1024, not 1025"),
        ):
            status, answer = web.act(path, body)
            assert (status, message in answer["error"]) == (code, True), answer
        status, answer = web.act("/api/workers/w-never-seen/resize", {"concurrency": 2})
        assert status == 404 and "no worker 'w-never-seen' is connected" in answer["error"], answer
    app.close()


def test_an_unknown_worker_and_bad_input(board: str, browser: Chromium) -> None:
    status, body = _worker_api(board, "w-never-seen")
    assert status == 404 and "no worker 'w-never-seen' is connected" in body["error"], body
    web = Web(board)
    for query, message in (
        ("", "give a worker id"),
        ("?id=%20", "give a worker id"),
        ("?id=" + "x" * 257, "at most 256"),
        ("?id=a%00b", "no control characters"),
    ):
        status, body = web.json("GET", "/api/worker" + query)
        assert status == 400 and message in body["error"], (query, body)
        status, _, page = web.raw("GET", "/workers" + query)
        assert status == 400 and message in page, query
    browser.goto(f"{board}/workers?id=w-never-seen")
    browser.wait("document.body.dataset.found === 'no'")
    assert "no worker 'w-never-seen'" in browser.evaluate("document.getElementById('missing').textContent")


def test_a_worker_id_with_markup_is_shown_as_text(board: str, browser: Chromium) -> None:
    browser.goto(f"{board}/workers?" + urllib.parse.urlencode({"id": MARKUP}))
    browser.wait("document.body.dataset.found === 'no'")
    assert browser.evaluate("document.getElementById('worker-id').textContent") == MARKUP
    assert browser.evaluate("document.title").startswith("Worker " + MARKUP)
    assert browser.evaluate("document.querySelectorAll('main img, main script').length") == 0
    assert browser.evaluate("typeof window.__pwned") == "undefined"


def test_a_viewer_reads_the_page_a_stranger_does_not(site: Site) -> None:
    worker_id = f"w-viewed-{uuid.uuid4().hex[:6]}"
    path = "/api/worker?" + urllib.parse.urlencode({"id": worker_id})
    stranger = site.web()
    assert stranger.json("GET", path)[0] == 401
    status, headers, _ = stranger.raw("GET", "/workers?id=" + worker_id)
    assert status == 303 and headers["location"].startswith("/login?next=")
    viewer = site.web()
    assert log_in(viewer, username="vic", password=PASSWORDS["vic"])[0] == 303
    status, body = viewer.json("GET", path)  # read, and answered: no such worker
    assert status == 404 and f"no worker {worker_id!r}" in body["error"], body
    status, _, page = viewer.raw("GET", "/workers?id=" + worker_id)
    assert status == 200 and f'data-id="{worker_id}"' in page
    assert (
        "data-post" not in page.split("<main>", 1)[1].split("</main>", 1)[0]
    )  # the Drain button gets it from the script
    assert viewer.act(f"/api/workers/{worker_id}/drain")[0] == 403
    assert viewer.act(f"/api/workers/{worker_id}/resize", {"concurrency": 2})[0] == 403
