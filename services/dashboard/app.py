"""The dashboard's web application: HTML pages and their JSON API (/api/...), on Starlette."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import tasktide
from tasktide._hooks import Hooks
from tasktide_services.common.validate import TASK_NAME
from tasktide_services.dashboard import bulk
from tasktide_services.dashboard.access import Access
from tasktide_services.dashboard.activity import Activity
from tasktide_services.dashboard.data import Platform
from tasktide_services.dashboard.guard import Guard
from tasktide_services.dashboard.login import login, logout, session_info
from tasktide_services.dashboard.names import MAX_NAME, names
from tasktide_services.dashboard.pages import render
from tasktide_services.dashboard.report import WINDOW_SECONDS, Reports
from tasktide_services.dashboard.sampler import Sampler
from tasktide_services.dashboard.workers import MAX_WORKER_ID, summaries, worker_report

SESSION_COOKIE = "tasktide_session"
STATIC = Path(__file__).parent / "static"
SAMPLE_SECONDS = 5.0
TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def _error(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, tasktide.NotFound):
        return 404, str(exc)
    if isinstance(exc, tasktide.InvalidArgument):
        return 400, str(exc)
    if isinstance(exc, tasktide.Unavailable):
        return 503, f"platform unreachable: {exc}"
    if isinstance(exc, tasktide.ServiceError) and exc.code == "FAILED_PRECONDITION":
        return 409, str(exc)
    return 502, f"{type(exc).__name__}: {exc}"


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


def _api(handler: Callable[[Request, Platform], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await handler(request, request.app.state.platform)
        except tasktide.TasktideError as exc:
            status, message = _error(exc)
            return JSONResponse({"error": message}, status_code=status)
        if isinstance(body, Response):
            return body
        return JSONResponse(body)

    return endpoint


async def api_overview(request: Request, p: Platform) -> Any:
    body = await _call(p.overview)
    body["recent"] = await _call(p.recent)
    return body


TASK_FILTERS = ("state", "name", "queue", "worker", "error", "cursor")


async def api_tasks(request: Request, p: Platform) -> Any:
    query = {k: request.query_params.get(k, "").strip()[:1000] for k in TASK_FILTERS}
    try:
        return await _call(p.tasks, query)
    except ValueError as exc:  # an unknown state name
        return JSONResponse({"error": str(exc)}, status_code=400)


async def api_task(request: Request, p: Platform) -> Any:
    task_id = request.path_params["task_id"]
    if not TASK_ID.match(task_id):
        return JSONResponse({"error": "not a task id"}, status_code=400)
    task = await _call(p.task, task_id)
    if task is None:
        return JSONResponse({"error": f"no such task: {task_id}"}, status_code=404)
    return task


async def api_cancel(request: Request, p: Platform) -> Any:
    return {"id": request.path_params["task_id"], "state": await _call(p.cancel, request.path_params["task_id"])}


async def api_pause(request: Request, p: Platform) -> Any:
    queue, action = request.path_params["queue"], request.path_params["action"]
    if action not in ("pause", "resume"):
        return JSONResponse({"error": f"unknown action: {action}"}, status_code=404)
    paused = action == "pause"
    await _call(p.set_paused, queue, paused)
    return {"queue": queue, "paused": paused}


async def api_drain(request: Request, p: Platform) -> Any:
    worker_id = request.path_params["worker_id"]
    return {"worker": worker_id, "sessions": await _call(p.drain_worker, worker_id)}


async def api_resize(request: Request, p: Platform) -> Any:
    """POST {"concurrency": N}: the worker runs at most N tasks at a time from now on."""
    worker_id = request.path_params["worker_id"]
    try:
        data = await request.json()
    except ValueError:
        data = None
    n = data.get("concurrency") if isinstance(data, dict) else None
    if not isinstance(n, int) or isinstance(n, bool):
        return JSONResponse({"error": 'give the concurrency as a whole number: {"concurrency": N}'}, status_code=400)
    return {"worker": worker_id, "sessions": await _call(p.resize_worker, worker_id, n), "concurrency": n}


async def api_dead(request: Request, p: Platform) -> Any:
    queue = request.path_params["queue"]
    return {"queue": queue, "tasks": await _call(p.dead, queue)}


async def api_requeue(request: Request, p: Platform) -> Any:
    queue = request.path_params["queue"]
    ids: list[str] = []
    if await request.body():
        data = await request.json()
        ids = [str(i) for i in data.get("ids", [])] if isinstance(data, dict) else []
    return {"queue": queue, "requeued": await _call(p.requeue, queue, ids)}


async def api_schedules(request: Request, p: Platform) -> Any:
    return {"schedules": await _call(p.schedules)}


async def api_series(request: Request, p: Platform) -> Any:
    sampler: Sampler = request.app.state.sampler
    return sampler.series()


async def api_activity(request: Request, p: Platform) -> Any:
    counters: Activity = request.app.state.activity
    return await _call(counters.get)


def _task_name(request: Request) -> tuple[str, str]:
    """The task name of the request's query (?name=...) and what is wrong with it ('' if nothing)."""
    name = request.query_params.get("name", "")
    if not name.strip():
        return name, "give a task name: /names?name=..."
    if len(name) > MAX_NAME:
        return name, f"a task name is at most {MAX_NAME} characters"
    if not TASK_NAME.fullmatch(name):
        return name, "not a task name: letters, digits, _ . : - and no leading digit"
    return name, ""


async def api_name(request: Request, p: Platform) -> Any:
    name, wrong = _task_name(request)
    if wrong:
        return JSONResponse({"error": wrong}, status_code=400)
    reports: Reports = request.app.state.names
    body = await _call(reports.get, name)
    if body is None:
        minutes = WINDOW_SECONDS // 60
        return JSONResponse({"error": f"no task named {name!r} changed in the last {minutes} minutes"}, 404)
    return body


async def name_page(request: Request) -> Response:
    name, wrong = _task_name(request)
    return render(request, "taskname.html", page="taskname", name=name, wrong=wrong, status_code=400 if wrong else 200)


def _worker_id(request: Request) -> tuple[str, str]:
    """The worker id of the request's query (?id=...) and what is wrong with it ('' if nothing)."""
    worker_id = request.query_params.get("id", "")
    if not worker_id.strip():
        return worker_id, "give a worker id: /workers?id=..."
    if len(worker_id) > MAX_WORKER_ID:
        return worker_id, f"a worker id is at most {MAX_WORKER_ID} characters"
    if not worker_id.isprintable():
        return worker_id, "a worker id has no control characters"
    return worker_id, ""


async def api_worker(request: Request, p: Platform) -> Any:
    worker_id, wrong = _worker_id(request)
    if wrong:
        return JSONResponse({"error": wrong}, status_code=400)
    body = await _call(worker_report, p.client, worker_id, request.app.state.worker_summaries)
    if body is None:
        minutes = WINDOW_SECONDS // 60
        return JSONResponse(
            {"error": f"no worker {worker_id!r} is connected, and no task of it changed in the last {minutes} minutes"},
            404,
        )
    return body


async def worker_page(request: Request) -> Response:
    worker_id, wrong = _worker_id(request)
    return render(
        request, "worker.html", page="worker", worker_id=worker_id, wrong=wrong, status_code=400 if wrong else 200
    )


BULK = {"cancel": (bulk.cancel_preview, bulk.cancel), "requeue": (bulk.requeue_preview, bulk.requeue)}


async def api_bulk(request: Request, p: Platform) -> Any:
    """GET: how many tasks the action would take (the page's confirmation); POST: the action.
    The filters come in the query string, as on the Tasks page."""
    action = request.path_params["action"]
    if action not in BULK:
        return JSONResponse({"error": f"unknown bulk action: {action}"}, status_code=404)
    query = {k: request.query_params.get(k, "").strip()[:1000] for k in bulk.FILTERS}
    preview, act = BULK[action]
    try:
        return await _call(act if request.method == "POST" else preview, p.client, query)
    except ValueError as exc:  # an unknown state name
        return JSONResponse({"error": str(exc)}, status_code=400)


def _page(template: str, **fixed: Any) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return render(request, template, **fixed, **request.path_params)

    return endpoint


async def lookup(request: Request) -> Response:
    task_id = request.query_params.get("id", "").strip()
    if not task_id:
        return RedirectResponse("/", status_code=303)
    return RedirectResponse(request.url_for("task_page", task_id=task_id), status_code=303)


@dataclass(frozen=True)
class WebSettings:
    """How the dashboard serves people: who may log in, its cookie, the Host names it answers."""

    access: Access
    session_key: str
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    secure_cookie: bool = False  # served over https (the cookie is then sent over https only)


def create_app(
    address: str, web: WebSettings, hooks: Hooks | None = None, sample_seconds: float = SAMPLE_SECONDS
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.platform = Platform(address, hooks)
        app.state.sampler = Sampler(app.state.platform.client, sample_seconds).start()
        app.state.activity = Activity(app.state.platform.client)
        app.state.names = names(app.state.platform.client)
        app.state.worker_summaries = summaries(app.state.platform.client)
        try:
            yield
        finally:
            app.state.sampler.stop()
            app.state.platform.close()

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/session", session_info),
        Route("/", _page("overview.html", page="overview")),
        Route("/tasks", _page("tasks.html", page="tasks", bulk_limit=bulk.BULK_LIMIT)),
        Route("/tasks/{task_id}", _page("task.html", page="task"), name="task_page"),
        Route("/names", name_page),
        Route("/workers", worker_page),
        Route("/lookup", lookup),
        Route("/dead/{queue}", _page("dead.html", page="dead")),
        Route("/schedules", _page("schedules.html", page="schedules")),
        Route("/charts", _page("charts.html", page="charts")),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/overview", _api(api_overview)),
        Route("/api/tasks", _api(api_tasks)),
        Route("/api/tasks/{task_id}", _api(api_task)),
        Route("/api/tasks/{task_id}/cancel", _api(api_cancel), methods=["POST"]),
        Route("/api/queues/{queue}/{action:str}", _api(api_pause), methods=["POST"]),
        Route("/api/workers/{worker_id:path}/drain", _api(api_drain), methods=["POST"]),
        Route("/api/workers/{worker_id:path}/resize", _api(api_resize), methods=["POST"]),
        Route("/api/dead/{queue}", _api(api_dead)),
        Route("/api/dead/{queue}/requeue", _api(api_requeue), methods=["POST"]),
        Route("/api/schedules", _api(api_schedules)),
        Route("/api/series", _api(api_series)),
        Route("/api/activity", _api(api_activity)),
        Route("/api/names", _api(api_name)),
        Route("/api/worker", _api(api_worker)),
        Route("/api/bulk/{action}", _api(api_bulk), methods=["GET", "POST"]),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(web.allowed_hosts), www_redirect=False),
        Middleware(
            SessionMiddleware,
            secret_key=web.session_key,
            session_cookie=SESSION_COOKIE,
            max_age=int(web.access.lifetime_seconds),
            same_site="strict",
            https_only=web.secure_cookie,
        ),
        Middleware(Guard, access=web.access),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.access = web.access
    return app
