"""The console is served at /ui unless ASSIGN_UI=false; /docs and /redoc use local assets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assign.app import create_app
from assign.services.context import Context


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"admin_key": "asg_mount-test-key"}


async def _client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context=ctx, migrate=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://assign.test"
    ) as http:
        yield http


async def test_pages_need_a_session(ctx: Context, client: httpx.AsyncClient) -> None:
    for path in ("/ui", "/ui/overview", "/ui/links?status=pending", "/ui/settings"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] in ("/ui/overview", "/ui/login"), path
    login = await client.get("/ui/login")
    assert login.status_code == 200 and "Admin key" in login.text
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert (await client.get("/ui/static/vendor/htmx/htmx.min.js")).status_code == 200


async def test_a_session_cookie_after_sign_in(ctx: Context, client: httpx.AsyncClient) -> None:
    wrong = await client.post("/ui/login", data={"admin_key": "asg_wrong"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    signed = await client.post("/ui/login", data={"admin_key": "asg_mount-test-key"})
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "asg_mount-test-key" not in cookie
    page = await client.get("/ui/overview")
    assert page.status_code == 200 and "<h1>Overview</h1>" in page.text
    assert "asg_mount-test-key" not in page.text


async def test_ui_false_turns_the_console_off(ctx: Context) -> None:
    ctx.settings = ctx.settings.model_copy(update={"ui": False})
    async for http in _client(ctx):
        assert (await http.get("/ui/login")).status_code in (401, 404)
        assert (await http.get("/docs")).status_code == 200


async def test_docs_use_local_assets(ctx: Context, client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        page = await client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        for url in urls:
            if url.startswith("/docs/static/"):
                assert (await client.get(url)).status_code == 200, url


async def test_a_live_update_without_a_session_sends_the_page_to_sign_in(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    response = await client.get("/ui/overview/live", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response.headers["hx-redirect"] == "/ui/login"
