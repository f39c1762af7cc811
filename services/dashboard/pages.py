"""Rendering the HTML pages: one Jinja2 environment that escapes everything it renders.

No template marks a value safe: task arguments, results, errors, tracebacks and schedule fields
reach the browser through the JSON API and are escaped by the pages' scripts; what the templates
render themselves (task ids, queue names, the user's name) is escaped here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from tasktide_services.dashboard.access import Access

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True,
)
TEMPLATES = Jinja2Templates(env=ENVIRONMENT)


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    access: Access = request.app.state.access
    identity = getattr(request.state, "identity", None)
    base = {
        "address": request.app.state.platform.address,
        "identity": identity,
        "login_needed": not access.open,
        "csrf": access.csrf(request.session),
        "nonce": request.state.csp_nonce,
    }
    return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status_code)
