"""PRODUCT §9 "Authentication fails closed": every route of the application, found in
``app.routes`` (so a new route is covered by itself), asks for a key unless its path is public,
with or without an ASGI ``root_path``."""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from typer.testing import CliRunner

from assign.api.middleware import PUBLIC_PATHS, is_public
from assign.app import create_app
from assign.cli import app as cli_app
from assign.services.context import Context
from assign.settings import Settings

PARAM = re.compile(r"\{[^}]+\}")


def _routes(app: object) -> list[tuple[str, str]]:
    """(method, path with each parameter filled in) of every route of ``app``, those of its
    included routers too."""
    out = []
    for route in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or {"GET"}
        if path is None:
            continue
        filled = PARAM.sub(lambda m: "g" if m.group() == "{group}" else str(uuid.uuid4()), path)
        out.extend((method, filled) for method in sorted(methods - {"HEAD"}))
    return out


@pytest.mark.parametrize("root_path", ["", "/prefix"])
async def test_every_route_needs_a_key_except_the_public_ones(ctx: Context, root_path: str) -> None:
    """As ``assign serve --root-path`` (uvicorn) serves: the prefix in the scope's ``root_path``
    and in front of its ``path``."""
    app = create_app(context=ctx, migrate=False)
    routes = _routes(app)
    assert len(routes) > 40  # the three surfaces, health, metrics and docs
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        for method, path in routes:
            response = await http.request(method, root_path + path, json={})
            asked_for_key = response.headers.get("www-authenticate") == "X-API-Key"
            if is_public(path):  # (the console's sign-in may refuse a wrong key: not a key check)
                assert not asked_for_key, (method, root_path + path)
            else:
                assert response.status_code in (401, 404), (method, root_path + path)
                if response.status_code == 401:
                    assert asked_for_key, (method, root_path + path)
                else:  # only a route that does not exist
                    assert response.json()["error"] == "No such route"
        for path in ("/healthz", "/openapi.json", "/docs"):
            assert (await http.get(root_path + path)).status_code == 200, path
        for path in ("/", "/nothing", "/api", "/api/v1", "/healthzz", "/api/v1/admin"):
            assert (await http.get(root_path + path)).status_code == 401, path


def test_the_public_paths_are_exactly_the_documented_ones() -> None:
    assert set(PUBLIC_PATHS) == {
        "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/static", "/ui"
    }  # fmt: skip
    assert is_public("/ui") and is_public("/ui/login") and is_public("/docs/oauth2-redirect")
    assert not is_public("/uix") and not is_public("/api/v1/tool/heartbeat")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_takes_a_root_path(how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    given: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: given.update(kwargs))
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setenv("ASSIGN_DATABASE_URL", f"sqlite:///{tmp_path}/assign.db")
    monkeypatch.setenv("ASSIGN_SECRET_KEY", "s" * 40)
    args = ["serve", "--no-dispatcher"]
    if how == "option":
        monkeypatch.setenv("ASSIGN_ROOT_PATH", "")  # serve sets it: undone after the test
        args += ["--root-path", "/prefix/"]
    else:
        monkeypatch.setenv("ASSIGN_ROOT_PATH", "/prefix")
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert given["root_path"] == "/prefix"
    with pytest.raises(ValueError):
        Settings(root_path="prefix")
