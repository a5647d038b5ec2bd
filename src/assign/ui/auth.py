"""Console sign-in: the session cookie, the CSRF check of every action, read-only sessions.

The cookie holds a random session id (256 bits); the server keeps only its digest, so a
signed-out or expired cookie is worth nothing. Every POST but the sign-in carries the session's
CSRF token; the cookie is ``SameSite=Strict`` besides.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from assign.services import sessions
from assign.services.context import Context
from assign.services.sessions import Session
from assign.ui import render

COOKIE = "assign_session"
router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """A console page asked for without a session: off to the sign-in page."""


class Refused(Exception):
    """An action refused with 403 (no session, a bad CSRF token, or a read-only key)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def _session(request: Request) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    return await sessions.find(_ctx(request), token=token)


async def viewer(request: Request) -> Session:
    """The session of a page view; its notice, if any, is shown this once."""
    session = await _session(request)
    if session is None:
        raise SignInRequired
    if session.flash is not None:
        await sessions.set_flash(_ctx(request), id_hash=session.id_hash, flash=None)
    return session


class Form(dict[str, list[str]]):
    """A submitted form: every value of each field."""

    def one(self, name: str) -> str:
        values = self.get(name) or [""]
        return values[0]


async def read_form(request: Request) -> Form:
    body = (await request.body()).decode("utf-8", "replace")
    return Form(parse_qs(body, keep_blank_values=True))


async def actor(request: Request) -> tuple[Session, Form]:
    """The session and form of an action: 403 without a session, with a token that is not the
    session's, or for a read-only key."""
    session = await _session(request)
    if session is None:
        raise Refused("Sign in first: this session has ended.")
    form = await read_form(request)
    token = form.one("csrf_token")
    if not token or not hmac.compare_digest(token.encode(), session.csrf_token.encode()):
        raise Refused("The form's CSRF token is missing or not this session's.")
    if session.read_only:
        raise Refused("This admin key is read-only.")
    return session, form


Viewer = Annotated[Session, Depends(viewer)]
Actor = Annotated[tuple[Session, Form], Depends(actor)]


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(render.base_path(request) + path, status_code=303)


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    if await _session(request) is not None:
        return redirect(request, "/overview")
    return render.page(request, "login.html", session=None, error=None)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    key = form.one("admin_key").strip()
    token = await sessions.sign_in(_ctx(request), key=key) if key else None
    if token is None:
        return render.page(
            request, "login.html", session=None, status_code=401, error="Invalid admin key."
        )
    response = redirect(request, "/overview")
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(_ctx(request).settings.ui_session_hours * 3600),
        path=render.base_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    session = await _session(request)
    form = await read_form(request)
    token = form.one("csrf_token")
    if session is None or not hmac.compare_digest(token.encode(), session.csrf_token.encode()):
        raise Refused("The form's CSRF token is missing or not this session's.")
    await sessions.sign_out(_ctx(request), id_hash=session.id_hash)
    response = redirect(request, "/login")
    response.delete_cookie(COOKIE, path=render.base_path(request))
    return response


def install_handlers(app: object) -> None:
    """Sign-in redirects and HTML 403 pages for the console's routes."""
    from fastapi import FastAPI

    assert isinstance(app, FastAPI)

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        if request.headers.get("hx-request"):
            # a live update of a page whose session ended: the whole page goes to sign-in
            login = render.base_path(request) + "/login"
            return Response(status_code=204, headers={"HX-Redirect": login})
        return redirect(request, "/login")

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return render.page(
            request, "error.html", session=None, status_code=403, title="Refused",
            message=exc.message,
        )  # fmt: skip

    app.add_exception_handler(SignInRequired, sign_in_first)
    app.add_exception_handler(Refused, refused)
