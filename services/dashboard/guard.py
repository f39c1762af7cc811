"""The checks every request passes before a page or the API sees it (an ASGI middleware).

- no session (when a login is needed): a page redirects to /login, the API answers 401;
- an action (any method but GET and HEAD) needs the session's CSRF token in the
  `x-tasktide-csrf` header (the login and logout forms carry it as a field and are checked there);
- a viewer's actions are refused (403);
- every response gets headers that keep the pages out of frames and their scripts to the page's
  own (a Content-Security-Policy with a per-request nonce the templates put on their scripts).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktide_services.dashboard.access import Access

CSRF_HEADER = "x-tasktide-csrf"
# Handled by their own endpoints: the login form works without a session, both forms carry the token.
_FORMS = ("/login", "/logout")
_SAFE = ("GET", "HEAD")


class Guard:
    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        send = _with_headers(send, nonce)
        request = Request(scope, receive)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        path = request.url.path
        if path in _FORMS:
            return None
        identity = self.access.identity(request.session)
        if identity is None:
            if path.startswith("/api/"):
                return JSONResponse({"error": "log in first (/login)"}, status_code=401)
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        request.scope["state"]["identity"] = identity
        if request.method in _SAFE:
            return None
        if not self.access.csrf_ok(request.session, request.headers.get(CSRF_HEADER)):
            return JSONResponse(
                {"error": f"actions need the session's CSRF token in the {CSRF_HEADER} header (GET /api/session)"},
                status_code=403,
            )
        if not identity.may_act:
            return JSONResponse({"error": f"{identity.user} may only read (role {identity.role})"}, status_code=403)
        return None


def _with_headers(send: Send, nonce: str) -> Send:
    policy = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    extra = [
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    ]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped
