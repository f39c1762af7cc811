"""The login page, logging in and out, and `GET /api/session` (who is logged in, and the CSRF token
scripts send with actions; a page of another origin cannot read it)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from tasktide_services.dashboard.access import Access, LoginRefused
from tasktide_services.dashboard.pages import render

FORM_LIMIT = 16 * 1024  # bytes of a login form; a token is well under 1 KB


def _access(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&+:;,@!$'()*-]*")


def _next(value: str) -> str:
    """Where to go after the login: a path of this dashboard only (never `//host` or another site)."""
    return value if _LOCAL_PATH.fullmatch(value) else "/"


async def _form(request: Request) -> dict[str, str] | None:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _login_page(request: Request, status: int = 200, error: str = "", **values: Any) -> Response:
    access = _access(request)
    return render(
        request,
        "login.html",
        status_code=status,
        page="login",
        error=error,
        tokens=access.authenticator is not None,
        passwords=access.users is not None,
        next=_next(request.query_params.get("next", "/")),
        **values,
    )


async def login(request: Request) -> Response:
    access = _access(request)
    if access.open:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return _login_page(request)
    form = await _form(request)
    if form is None:
        return _login_page(request, 400, "the login form was not sent as a form")
    if not access.csrf_ok(request.session, form.get("csrf")):
        return _login_page(request, 403, "the form has expired; log in again")
    address = request.client.host if request.client else ""
    if access.throttled(address):
        return _login_page(request, 429, "too many failed logins from this address; wait a minute")
    try:
        if form.get("token", "").strip():
            identity, ends, token_id = access.with_token(form["token"])
        else:
            name, password = form.get("username", ""), form.get("password", "")
            identity, ends, token_id = await run_in_threadpool(access.with_password, name, password)
    except LoginRefused as exc:
        access.failed(address)
        return _login_page(request, 401, f"login refused: {exc}", username=form.get("username", ""))
    access.start(request.session, identity, ends, token_id)
    return RedirectResponse(_next(form.get("next", "/")), status_code=303)


async def logout(request: Request) -> Response:
    access = _access(request)
    form = await _form(request)
    if form is None or not access.csrf_ok(request.session, form.get("csrf")):
        return JSONResponse({"error": "logging out needs the session's CSRF token (csrf form field)"}, status_code=403)
    access.end(request.session)
    return RedirectResponse("/login" if not access.open else "/", status_code=303)


async def session_info(request: Request) -> Response:
    identity = request.state.identity
    return JSONResponse(
        {
            "user": identity.user,
            "role": identity.role,
            "login": identity.how,
            "may_act": identity.may_act,
            "csrf": _access(request).csrf(request.session),
        }
    )
