"""The dashboard's task-name page (/names?name=...) in headless Chromium, on the tasks of
test_dashboard_charts.py (OK that succeed after a short sleep, BAD that fail): its counts, run and
wait time, recent runs, failures by error type and charts, checked in the page and in its screenshot
(kept as a test artefact); reached from the Activity and Tasks pages; an unknown name, a name with
markup in it, and bad input; a viewer may read it, a stranger may not."""

from __future__ import annotations

import urllib.parse
import uuid
from pathlib import Path

import tasktide
from tasktide import ClientSettings, TaskState
from tasktide_services.common.redis_server import free_port
from tasktide_services.dashboard.credentials import TokenHooks, static
from tasktide_services.testing import eventually, spawn_listening
from tests.test_dashboard import Web
from tests.test_dashboard_browser import Chromium, browser, until
from tests.test_dashboard_charts import BAD, OK, RUN_SECONDS, _artefact, _count, _plot, _png_rgb, board, ran
from tests.test_dashboard_login import PASSWORDS, Site, log_in, revoked, secured, site
from tests.test_list_tasks import own_platform

__all__ = ["board", "browser", "own_platform", "ran", "revoked", "secured", "site"]  # fixtures of other modules

RED, GREEN, PURPLE, AMBER = (0x8A, 0x1C, 0x1C), (0x17, 0x61, 0x2C), (0x6A, 0x3D, 0xB8), (0xD4, 0xA0, 0x17)
MARKUP = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=1>"


def _plot_without_text(browser: Chromium, pixels: list[bytes], chart: str) -> list[bytes]:
    """The screenshot's pixels of a chart's plot area from its top edge (where the largest value is
    drawn: a single point is a dot there, beside the legend), with every text of the chart (legend,
    axis labels) blanked, so a colour counted is a series' line or dot, never its legend."""
    box, texts = browser.evaluate(
        f"""(() => {{ const svg = document.querySelector('#{chart} svg'), r = svg.getBoundingClientRect();
             return [[r.left, r.top, r.width, r.height],
                     [...svg.querySelectorAll('text')].map(t => {{ const b = t.getBoundingClientRect();
                       return [b.left, b.top, b.right, b.bottom]; }})]; }})()"""
    )
    left, top, width, height = (int(v) for v in box)
    scale = width / 560  # the chart's viewBox is 560 x 180, its plot from y 12 to 156
    y0, y1 = top + int(6 * scale), top + height - int(24 * scale)
    x0, x1 = left + int(52 * scale), left + width
    rows = [bytearray(row) for row in pixels]
    for tl, tt, tr, tb in texts:
        for y in range(max(0, int(tt) - 1), min(len(rows), int(tb) + 2)):
            a, b = max(0, int(tl) - 1), int(tr) + 2
            rows[y][a * 3 : b * 3] = b"\xff" * (3 * len(range(a, b)))
    return [bytes(row[x0 * 3 : x1 * 3]) for row in rows[y0:y1]]


def _name_api(base: str, name: str) -> tuple[int, dict]:
    return Web(base).json("GET", "/api/names?" + urllib.parse.urlencode({"name": name}))


def test_the_report_of_a_name(ran, board: str) -> None:
    status, bad = _name_api(board, "ch.bad")
    assert status == 200, bad
    assert bad["summary"]["succeeded"] == 0 and bad["summary"]["failed"] == bad["summary"]["total"] == BAD
    assert bad["states"] == {"FAILED": BAD}
    assert [(e["type"], e["count"]) for e in bad["errors"]] == [("ValueError", BAD)]
    assert bad["errors"][0]["message"].startswith("no ") and bad["errors"][0]["task"] in ran["bad"]
    assert {r["id"] for r in bad["recent"]} == set(ran["bad"]) and len(bad["recent"]) == BAD
    updated = [r["updated"] for r in bad["recent"]]
    assert updated == sorted(updated, reverse=True)  # the latest changed first
    assert sum(bad["series"]["failed"]) == BAD and sum(bad["series"]["succeeded"]) == 0
    assert len(bad["series"]["at_ms"]) == 60
    status, ok = _name_api(board, "ch.ok")
    assert status == 200, ok
    assert (ok["summary"]["succeeded"], ok["summary"]["failed"], ok["errors"]) == (OK, 0, [])
    assert RUN_SECONDS * 1000 <= ok["summary"]["run_p50_ms"] <= ok["summary"]["run_p95_ms"]
    assert 0 <= ok["summary"]["wait_p50_ms"] <= ok["summary"]["wait_p95_ms"]
    assert all(r["run_ms"] >= RUN_SECONDS * 1000 and r["wait_ms"] >= 0 for r in ok["recent"])
    assert any(v is not None and v >= RUN_SECONDS * 1000 for v in ok["series"]["run_p50_ms"])


def test_the_page_of_a_name_in_a_browser(ran, board: str, browser: Chromium, tmp_path: Path) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", width=1300, height=1300, deviceScaleFactor=1, mobile=False)
    # reached from the Activity page's table by task name
    browser.goto(f"{board}/charts")
    link = "document.querySelector('#by-name tr[data-name=\"ch.bad\"] a.name')"
    assert browser.wait(f"{link}?.getAttribute('href')") == "/names?name=ch.bad"
    browser.evaluate(f"{link}.click()")
    browser.wait("location.pathname === '/names' && document.body.dataset.found === 'yes'")
    tiles = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#summary .tile')].map("
        "t => [t.dataset.k, t.querySelector('.v').textContent]))"
    )
    assert (tiles["succeeded"], tiles["failed"], tiles["total"]) == ("0", str(BAD), str(BAD))
    assert tiles["run_p50_ms"].endswith("ms") and tiles["wait_p95_ms"].endswith("ms"), tiles
    assert browser.evaluate("document.getElementById('task-name').textContent") == "ch.bad"
    errors = browser.evaluate(
        "[...document.querySelectorAll('#errors tr[data-error]')].map(r => [r.dataset.error, r.cells[1].textContent])"
    )
    assert errors == [["ValueError", str(BAD)]]
    recent = browser.evaluate("[...document.querySelectorAll('#recent tr[data-task]')].map(r => r.dataset.task)")
    assert sorted(recent) == sorted(ran["bad"])
    assert browser.evaluate("document.querySelectorAll('#recent tr[data-state=\"FAILED\"]').length") == BAD
    assert browser.evaluate("document.getElementById('list-link').getAttribute('href')") == "/tasks?name=ch.bad"
    points = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.charts path.series')].map("
        "p => [p.closest('div').id + '/' + p.dataset.series, +p.dataset.points]))"
    )
    assert points["chart-finished/failed"] == points["chart-finished/succeeded"] == 60  # a point a minute
    assert points["chart-times/run p50"] >= 1 and points["chart-times/wait p95"] >= 1
    shot = _artefact(browser, "dashboard-taskname-failed.png", tmp_path)
    width, height, pixels = _png_rgb(shot.read_bytes())
    assert (width, height) == (1300, 1300)
    assert _count(_plot(browser, pixels, "chart-finished"), RED) > 20  # the failed line rises off the axis
    assert _count(pixels, RED) > 200  # and the failed tile, the FAILED badges

    # the page of the name that succeeds, reached from a row of the Tasks page
    browser.goto(f"{board}/tasks?name=ch.ok")
    link = f"document.querySelector('#tasks tr[data-task=\"{ran['ok'][-1]}\"] a.name')"
    assert browser.wait(f"{link}?.getAttribute('href')") == "/names?name=ch.ok"
    browser.evaluate(f"{link}.click()")
    browser.wait("location.pathname === '/names' && document.body.dataset.found === 'yes'")
    run_p50 = browser.evaluate("document.querySelector('#summary .tile[data-k=\"run_p50_ms\"] .v').textContent")
    assert run_p50.endswith(" ms") and float(run_p50[:-3]) >= RUN_SECONDS * 1000, run_p50
    assert browser.evaluate("document.querySelector('#errors tbody').textContent.trim()") == "no failures"
    runs = browser.evaluate("[...document.querySelectorAll('#recent td.run')].map(td => td.textContent)")
    assert len(runs) == OK and all(float(r[:-3]) >= RUN_SECONDS * 1000 for r in runs), runs
    shot = _artefact(browser, "dashboard-taskname-succeeded.png", tmp_path)
    _, _, pixels = _png_rgb(shot.read_bytes())
    # the run time's p95 is drawn (over its p50, a hair apart), and the wait time's p95 (the largest
    # value, often at the top of the plot beside the legend)
    assert _count(_plot_without_text(browser, pixels, "chart-times"), PURPLE) > 5
    assert _count(_plot_without_text(browser, pixels, "chart-times"), AMBER) > 5
    assert _count(_plot(browser, pixels, "chart-finished"), GREEN) > 20


def test_an_unknown_name_and_bad_input(board: str, browser: Chromium) -> None:
    status, body = _name_api(board, "ch.never-ran")
    assert status == 404 and "no task named 'ch.never-ran'" in body["error"], body
    web = Web(board)
    for query, message in (
        ("", "give a task name"),
        ("?name=%20", "give a task name"),
        ("?name=" + "x" * 201, "at most"),
    ):
        status, body = web.json("GET", "/api/names" + query)
        assert status == 400 and message in body["error"], (query, body)
        status, _, page = web.raw("GET", "/names" + query)
        assert status == 400 and message in page, query
    browser.goto(f"{board}/names?name=ch.never-ran")
    browser.wait("document.body.dataset.found === 'no'")
    assert "no task named 'ch.never-ran'" in browser.evaluate("document.getElementById('missing').textContent")
    assert browser.evaluate("document.getElementById('missing').offsetParent !== null")  # shown


def test_a_name_with_markup_is_refused_and_shown_as_text(board: str, browser: Chromium) -> None:
    status, body = _name_api(board, MARKUP)
    assert status == 400 and "not a task name" in body["error"], body
    browser.goto(f"{board}/names?" + urllib.parse.urlencode({"name": MARKUP}))
    browser.wait("!!document.getElementById('wrong')")
    assert browser.evaluate("document.getElementById('task-name').textContent") == MARKUP
    assert "not a task name" in browser.evaluate("document.getElementById('wrong').textContent")
    assert browser.evaluate("document.title").startswith("Task name " + MARKUP)
    assert browser.evaluate("document.querySelectorAll('main img, main script, #taskname').length") == 0
    assert browser.evaluate("typeof window.__pwned") == "undefined"


def test_a_viewer_reads_the_page_a_stranger_does_not(site: Site) -> None:
    settings = ClientSettings.from_env({}, address=site.platform.address)
    with tasktide.Client(settings=settings, hooks=TokenHooks(static(site.token("admin")))) as admin:
        task = admin.submit("names.viewed", args=[1], queue=f"names-{uuid.uuid4().hex[:6]}")
        admin.cancel(task.id)
        assert admin.status(task.id) is TaskState.CANCELLED
    stranger = site.web()
    assert stranger.json("GET", "/api/names?name=names.viewed")[0] == 401
    status, headers, _ = stranger.raw("GET", "/names?name=names.viewed")
    assert status == 303 and headers["location"].startswith("/login?next=")
    viewer = site.web()
    assert log_in(viewer, username="vic", password=PASSWORDS["vic"])[0] == 303
    assert until(lambda: viewer.json("GET", "/api/names?name=names.viewed")[0] == 200, 30)
    status, body = viewer.json("GET", "/api/names?name=names.viewed")
    assert body["states"] == {"CANCELLED": 1} and body["recent"][0]["id"] == task.id
    status, _, page = viewer.raw("GET", "/names?name=names.viewed")
    assert status == 200 and 'data-name="names.viewed"' in page
    # the page offers no action; a viewer's action elsewhere is still refused
    assert "data-post" not in page.split("<main>", 1)[1].split("</main>", 1)[0]
    assert viewer.act(f"/api/tasks/{task.id}/cancel")[0] == 403


def test_an_unreachable_platform_is_a_clear_error() -> None:
    proc, listening, _ = spawn_listening("dashboard", "--address", f"127.0.0.1:{free_port()}", listen="--listen")
    try:

        def answer() -> tuple[int, dict] | None:
            try:
                return _name_api(f"http://{listening}", "ch.ok")
            except OSError:  # not serving yet
                return None

        status, body = eventually(answer, timeout=60, interval=0.2)
        assert status == 503 and "platform unreachable" in body["error"], body
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
