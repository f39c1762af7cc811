"""The dashboard's Activity page and bulk actions: charts of the last hour drawn in headless Chromium
(the SVG paths exist and have points, checked in the page whose screenshot is kept as a test
artefact, and the screenshot holds the series' colours), the sampled counts and the counters per task
name and per worker against what ran, bulk cancel taking exactly the Tasks page's selection after its
confirmation step, and a viewer refused the bulk actions."""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasktide
from tasktide import Client, ClientSettings, TaskState
from tasktide_services.common.redis_server import free_port
from tasktide_services.dashboard.credentials import TokenHooks, static
from tasktide_services.testing import PlatformThread, eventually, run_worker_thread, spawn_listening
from tests.tasks_app import app
from tests.test_dashboard import Web
from tests.test_dashboard_browser import Chromium, browser, until
from tests.test_dashboard_login import PASSWORDS, Site, log_in, revoked, secured, site
from tests.test_list_tasks import own_platform

__all__ = ["browser", "own_platform", "revoked", "secured", "site"]  # fixtures shared with other modules

OK, BAD = 30, 10
RUN_SECONDS = 0.05  # each ch.ok task sleeps this long


@pytest.fixture(scope="module")
def board(own_platform: PlatformThread) -> Iterator[str]:
    """An open dashboard (loopback, no login) sampling every half second."""
    proc, listening, _ = spawn_listening(
        "dashboard", "--address", own_platform.address, "--sample-seconds", "0.5", listen="--listen"
    )
    base = f"http://{listening}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        try:
            return Web(base).json("GET", "/api/series")[0] == 200
        except OSError:
            return False

    try:
        eventually(up, timeout=20, interval=0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def ran(own_platform: PlatformThread, board: str) -> Iterator[dict[str, list[str]]]:
    """OK tasks that succeed and BAD that fail, run by worker "w-charts", after the dashboard started."""
    app = tasktide.App("ch", address=own_platform.address)

    def double(x: int) -> int:
        time.sleep(RUN_SECONDS)
        return x * 2

    ok = app.task(name="ch.ok")(double)

    def bad(message: str) -> None:
        raise ValueError(message)

    fail = app.task(name="ch.bad")(bad)
    with run_worker_thread(app, own_platform.address, queues=("charts",), concurrency=3, worker_id="w-charts"):
        handles = {"ok": [ok.apply_async(args=(i,), queue="charts") for i in range(OK)]}
        for h in handles["ok"]:
            h.get(timeout=60)
        handles["bad"] = [fail.apply_async(args=(f"no {i}",), queue="charts") for i in range(BAD)]
        for h in handles["bad"]:
            with pytest.raises(tasktide.TaskFailed):
                h.get(timeout=60)
        yield {k: [h.id for h in v] for k, v in handles.items()}
    app.close()


def counted(board: str) -> dict[str, Any]:
    """The series once the samples have counted every task that ran."""

    def done() -> Any:
        s = Web(board).json("GET", "/api/series")[1]
        return s if (sum(s["succeeded"]), sum(s["failed"])) == (OK, BAD) else None

    series: dict[str, Any] = eventually(done, timeout=30, interval=0.2)
    return series


def test_the_sampled_series_count_what_ran(ran, board: str) -> None:
    s = counted(board)
    assert s["interval_seconds"] == 0.5 and len(s["at_ms"]) >= 3
    assert s["at_ms"] == sorted(s["at_ms"])
    assert any(v is not None and v >= RUN_SECONDS * 1000 for v in s["run_p95_ms"])  # ch.ok's sleep
    assert any(v is not None and v >= 0 for v in s["wait_p50_ms"])
    for k in ("run", "wait"):
        pairs = zip(s[f"{k}_p50_ms"], s[f"{k}_p95_ms"], strict=True)
        assert all((a is None) == (b is None) and (a is None or 0 <= a <= b) for a, b in pairs)


def test_counters_per_task_name_and_per_worker(ran, board: str) -> None:
    status, a = Web(board).json("GET", "/api/activity")
    assert status == 200, a
    names = {n["name"]: n for n in a["names"]}
    assert (names["ch.ok"]["succeeded"], names["ch.ok"]["failed"]) == (OK, 0)
    assert (names["ch.bad"]["succeeded"], names["ch.bad"]["failed"]) == (0, BAD)
    assert RUN_SECONDS * 1000 <= names["ch.ok"]["run_p50_ms"] <= names["ch.ok"]["run_p95_ms"]
    assert 0 <= names["ch.bad"]["run_p50_ms"] <= names["ch.bad"]["run_p95_ms"]
    for n in ("ch.ok", "ch.bad"):
        assert 0 <= names[n]["wait_p50_ms"] <= names[n]["wait_p95_ms"]
    workers = {w["worker_id"]: w for w in a["workers"]}
    w = workers["w-charts"]
    assert (w["processed"], w["failed"], w["active"]) == (OK + BAD, BAD, 0)
    assert w["online"] is True and w["concurrency"] == 3 and w["last_heartbeat_ago_s"] >= 0
    assert a["truncated"] is False and a["scanned"] == OK + BAD


def test_the_charts_page_draws_the_series(ran, board: str, browser: Chromium, tmp_path: Path) -> None:
    browser.call("Emulation.setDeviceMetricsOverride", width=1300, height=1100, deviceScaleFactor=1, mobile=False)
    counted(board)
    browser.goto(f"{board}/charts")
    points = "[...document.querySelectorAll('#chart-throughput path.series')].map(p => +p.dataset.points)"
    browser.wait(f"document.body.dataset.live === 'ok' && {points}.length === 2 && Math.min(...{points}) >= 3")
    # the line of succeeded tasks is drawn off the axis somewhere (its y coordinates differ)
    rises = """(() => {
      const d = document.querySelector('#chart-throughput path[data-series="succeeded"]').getAttribute('d');
      const ys = d.split(' ').map(p => +p.slice(1).split(',')[1]);
      return Math.min(...ys) < Math.max(...ys); })()"""
    browser.wait(rises)
    browser.wait("!!document.querySelector('#by-name tr[data-name=\"ch.ok\"]')")
    paths = browser.evaluate(
        """[...document.querySelectorAll('.charts svg path.series')].map(p => ({
             chart: p.closest('figure').querySelector('div').id, series: p.dataset.series,
             points: +p.dataset.points, d: p.getAttribute('d')}))"""
    )
    charts = {(p["chart"], p["series"]) for p in paths}
    assert charts == {
        ("chart-throughput", "succeeded"),
        ("chart-throughput", "failed"),
        ("chart-failures", "failed"),
        ("chart-depth", "ready"),
        ("chart-depth", "running"),
        ("chart-wait", "p50"),
        ("chart-wait", "p95"),
        ("chart-run", "p50"),
        ("chart-run", "p95"),
    }
    for p in paths:
        if p["chart"] in ("chart-wait", "chart-run"):  # points only where tasks finished
            assert p["points"] >= 1 and p["d"].count("L") == p["points"] - 1, p
        else:
            assert p["points"] >= 3 and p["d"].count("L") == p["points"] - 1, p
    ys = [float(xy.split(",")[1]) for xy in _coordinates(paths, "chart-throughput", "succeeded")]
    assert min(ys) < max(ys)
    assert browser.evaluate(
        "document.querySelector('#by-name tr[data-name=\"ch.bad\"] td:nth-child(3)').textContent"
    ) == str(BAD)
    run_p50 = browser.evaluate("document.querySelector('#by-name tr[data-name=\"ch.ok\"] td:nth-child(5)').textContent")
    assert run_p50.endswith(" ms") and float(run_p50[:-3]) >= RUN_SECONDS * 1000, run_p50
    assert browser.evaluate(
        "document.querySelector('#by-worker tr[data-worker=\"w-charts\"] td:nth-child(2)').textContent"
    ) == str(OK + BAD)
    assert browser.evaluate("typeof window.ttChart.line") == "function"  # served by the package, same origin

    shot = _artefact(browser, "dashboard-charts.png", tmp_path)
    width, height, pixels = _png_rgb(shot.read_bytes())
    assert (width, height) == (1300, 1100)
    # the succeeded line (#17612c) and the failed line (#8a1c1c) are drawn in the screenshot; the run
    # time's p50 (#1b4a9e) and the wait time's p50 (#b06f00) in their charts' plots (below the legend)
    assert _count(pixels, (0x17, 0x61, 0x2C)) > 100 and _count(pixels, (0x8A, 0x1C, 0x1C)) > 100
    assert _count(_plot(browser, pixels, "chart-run"), (0x1B, 0x4A, 0x9E)) > 5
    assert _count(_plot(browser, pixels, "chart-wait"), (0xB0, 0x6F, 0x00)) > 5


def test_a_series_at_the_top_of_its_axis_is_drawn_below_the_legend(board: str, browser: Chromium) -> None:
    """A flat series whose values are the axis' top (50 ms: a round maximum) is drawn below the
    legend's line, not through it."""
    browser.goto(f"{board}/charts")
    browser.wait("typeof window.ttChart === 'object'")
    line_top, legend_bottom = browser.evaluate(
        """(() => {
          const host = document.createElement('div');
          document.body.appendChild(host);
          const flat = [{label: 'p50', values: [50, 50, 50]}];
          const svg = ttChart.line(host, {times: [0, 1000, 2000], series: flat, unit: 'ms'});
          const ys = svg.querySelector('path.series').getAttribute('d').split(' ').map(p => +p.slice(1).split(',')[1]);
          const legend = [...svg.querySelectorAll('text')].find(t => t.textContent === '\u2014 p50').getBBox();
          return [Math.min(...ys), legend.y + legend.height]; })()"""
    )
    assert line_top - 0.9 > legend_bottom  # the stroke (1.8 wide) clears the legend's text


def _artefact(browser: Chromium, name: str, tmp_path: Path) -> Path:
    """A screenshot of the page, kept in $TASKTIDE_TEST_ARTEFACTS when set (CI keeps that folder)."""
    folder = Path(os.environ.get("TASKTIDE_TEST_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / name
    shot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"]))
    return shot


def _plot(browser: Chromium, pixels: list[bytes], chart: str) -> list[bytes]:
    """The screenshot's pixels of a chart's plot area: its SVG's box (page at scale 1, not scrolled)
    below the legend line and above the time labels."""
    box = browser.evaluate(
        f"""(() => {{ const r = document.querySelector('#{chart} svg').getBoundingClientRect();
             return [r.left, r.top, r.width, r.height]; }})()"""
    )
    left, top, width, height = (int(v) for v in box)
    scale = width / 560  # the chart's viewBox is 560 x 180
    y0, y1 = top + int(26 * scale), top + height - int(24 * scale)
    x0, x1 = left + int(52 * scale), left + width
    return [row[x0 * 3 : x1 * 3] for row in pixels[y0:y1]]


def _coordinates(paths: list[dict[str, Any]], chart: str, series: str) -> list[str]:
    d = next(p["d"] for p in paths if (p["chart"], p["series"]) == (chart, series))
    return [part[1:] for part in d.split()]


def _count(pixels: list[bytes], rgb: tuple[int, int, int], tolerance: int = 24) -> int:
    n = 0
    for row in pixels:
        for i in range(0, len(row), 3):
            if all(abs(row[i + k] - rgb[k]) <= tolerance for k in range(3)):
                n += 1
    return n


def _png_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line) if channels == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def test_bulk_cancel_takes_exactly_the_filtered_tasks(
    own_platform: PlatformThread, board: str, browser: Chromium, tmp_path: Path
) -> None:
    qa, qb = f"bulk-{uuid.uuid4().hex[:6]}", f"bulk-{uuid.uuid4().hex[:6]}"
    with Client(settings=ClientSettings.from_env({}, address=own_platform.address)) as client:

        def submit(name: str, queue: str) -> str:
            return client.submit(name, args=[1], queue=queue, countdown=600).id

        chosen = [submit("ch.slow", qa) for _ in range(5)]
        others = [submit("ch.other", qa) for _ in range(3)] + [submit("ch.slow", qb) for _ in range(4)]
        browser.call("Emulation.setDeviceMetricsOverride", width=1300, height=900, deviceScaleFactor=1, mobile=False)
        browser.goto(f"{board}/tasks?queue={qa}&name=ch.slow")
        browser.wait(
            "document.body.dataset.live === 'ok' && document.querySelectorAll('#tasks tr[data-task]').length === 5"
        )
        browser.evaluate("document.querySelector('button[data-bulk=\"cancel\"]').click()")
        question = browser.wait(
            "!document.getElementById('bulk-confirm').hidden && document.getElementById('bulk-question').textContent"
        )
        assert question.startswith("Cancel 5 task(s)"), question
        _artefact(browser, "dashboard-bulk-confirm.png", tmp_path)
        assert all(client.status(t) is TaskState.SCHEDULED for t in chosen)  # nothing before the confirmation
        browser.evaluate("document.getElementById('bulk-yes').click()")
        assert browser.wait("document.getElementById('bulk-result').textContent") == "Cancelled 5 task(s)."
        assert [client.status(t) for t in chosen] == [TaskState.CANCELLED] * 5
        assert [client.status(t) for t in others] == [TaskState.SCHEDULED] * 7
        for t in others:
            client.cancel(t)


def test_bulk_requeue_takes_the_filtered_dead_letters(own_platform: PlatformThread, board: str) -> None:
    q = f"bulk-{uuid.uuid4().hex[:6]}"
    with Client(settings=ClientSettings.from_env({}, address=own_platform.address)) as client:
        with run_worker_thread(app, own_platform.address, queues=(q,)):
            dead = [client.submit("t.always_fails", args=[f"gone {i}"], queue=q) for i in range(3)]
            for h in dead:
                with pytest.raises(tasktide.TaskDead):
                    h.get(timeout=30)
            # The final event is recorded before the task joins the dead letters: wait for the three.
            eventually(lambda: len(client.dead_letters(q)) == 3)
        web = Web(board)
        assert web.json("GET", f"/api/bulk/requeue?queue={q}&name=t.other")[1]["count"] == 0
        assert web.json("GET", f"/api/bulk/requeue?queue={q}&name=t.always_fails")[1]["count"] == 3
        status, body = web.act(f"/api/bulk/requeue?queue={q}&name=t.always_fails")
        assert status == 200 and body["count"] == 3, body
        assert client.dead_letters(q) == []
        assert [s.ready for s in client.queue_stats() if s.queue == q] == [3]
        for h in dead:
            client.cancel(h.id)


def test_a_viewer_cannot_run_bulk_actions(site: Site) -> None:
    q = f"bulk-{uuid.uuid4().hex[:6]}"
    settings = ClientSettings.from_env({}, address=site.platform.address)
    with tasktide.Client(settings=settings, hooks=TokenHooks(static(site.token("admin")))) as admin:
        task = admin.submit("ch.slow", args=[1], queue=q, countdown=600)
        viewer = site.web()
        assert log_in(viewer, username="vic", password=PASSWORDS["vic"])[0] == 303
        assert until(lambda: viewer.json("GET", f"/api/bulk/cancel?queue={q}")[1].get("count") == 1, 20)
        for action in ("cancel", "requeue"):
            status, body = viewer.act(f"/api/bulk/{action}?queue={q}")
            assert status == 403 and "may only read" in body["error"], body
        assert admin.status(task.id) is TaskState.SCHEDULED
        # an admin's bulk action without the CSRF token is refused too; with it, it acts
        ada = site.web()
        assert log_in(ada, username="ada", password=PASSWORDS["ada"])[0] == 303
        assert ada.json("POST", f"/api/bulk/cancel?queue={q}", {})[0] == 403
        status, body = ada.act(f"/api/bulk/cancel?queue={q}")
        assert status == 200 and (body["count"], body["states"]) == (1, {"CANCELLED": 1}), body
        assert admin.status(task.id) is TaskState.CANCELLED


def test_bad_bulk_requests_get_clear_errors(board: str) -> None:
    web = Web(board)
    assert web.json("GET", "/api/bulk/explode")[0] == 404
    status, body = web.json("GET", "/api/bulk/cancel?state=NOPE")
    assert status == 400 and body["error"], body
    assert json.dumps(body)  # JSON, not a page


def test_sampling_goes_on_while_the_platform_is_unreachable(tmp_path: Path) -> None:
    proc, listening, _ = spawn_listening(
        "dashboard", "--address", f"127.0.0.1:{free_port()}", "--sample-seconds", "0.2", listen="--listen"
    )
    try:
        web = Web(f"http://{listening}")

        def failures() -> Any:
            try:
                s = web.json("GET", "/api/series")[1]
            except OSError:  # not serving yet
                return None
            return s if s["errors"] >= 3 else None

        s = eventually(failures, timeout=60, interval=0.2)  # each failed sample was followed by another
        assert s["last_error"] and s["at_ms"] == []
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
