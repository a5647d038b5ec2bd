"""Rendering console pages: one Jinja2 environment, plain formatting of times and durations."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from assign.services.sessions import Session

HERE = Path(__file__).parent
#: the navigation bar: (name, path under /ui); each page's main heading is its name
NAV = (
    ("Overview", "/overview"),
    ("Servers", "/servers"),
    ("Requests", "/requests"),
    ("Links", "/links"),
    ("Accounts", "/accounts"),
    ("Settings", "/settings"),
)
#: nothing is fetched from another host; the chart and htmx need no eval or inline code
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def rfc3339(value: datetime | None) -> str:
    """The API's timestamp form, ``2025-12-01T10:00:00Z``; "never" for None."""
    if value is None:
        return "never"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(value: timedelta | float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 4 min``, ``3 d 1 h``; an em dash for None."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    seconds = max(0, seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def ago(value: datetime | None, now: datetime) -> str:
    """How long ago ``value`` was (``12 s ago``), or "never"."""
    if value is None:
        return "never"
    return f"{duration(now - value)} ago"


def number(value: int | float) -> str:
    return f"{value:,}"


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(rfc3339=rfc3339, duration=duration, number=number)
environment.globals.update(ago=ago, nav=NAV)


def base_path(request: Request) -> str:
    """Where the console lives for this request: ``/ui`` behind any ASGI ``root_path``."""
    return str(request.scope.get("root_path", "")).rstrip("/") + "/ui"


def page(
    request: Request,
    template: str,
    /,
    *,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A rendered page (or fragment) with the console's security headers."""
    ctx = request.app.state.ctx
    html = environment.get_template(template).render(
        base=base_path(request),
        session=session,
        can_act=session is not None and not session.read_only,
        path=request.url.path,
        now=ctx.clock.now(),
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)
