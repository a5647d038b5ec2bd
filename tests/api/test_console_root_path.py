"""Behind a proxy that strips a prefix (``assign serve --root-path``), the console's links, forms,
assets, redirects and cookie carry the prefix."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from assign.app import create_app
from assign.services.context import Context


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"admin_key": "asg_root-path-key"}


async def test_urls_carry_the_prefix(ctx: Context) -> None:
    app = create_app(context=ctx, migrate=False)
    # as uvicorn --root-path /assign passes it: root_path set, the path including it
    transport = httpx.ASGITransport(app=app, root_path="/assign")
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test/assign") as http:
        page = await http.get("/ui/login")
        assert page.status_code == 200
        assert 'action="/assign/ui/login"' in page.text
        assert 'href="/assign/ui/static/console.css"' in page.text
        assert (await http.get("/ui/overview")).headers["location"] == "/assign/ui/login"
        signed = await http.post("/ui/login", data={"admin_key": "asg_root-path-key"})
        assert signed.headers["location"] == "/assign/ui/overview"
        assert "Path=/assign/ui" in signed.headers["set-cookie"]
        docs = await http.get("/docs")
        assert "/assign/docs/static/swagger-ui/swagger-ui-bundle.js" in docs.text
