"""The operator console at /ui (server-rendered pages, htmx and uPlot served from the package),
and the API docs (/docs, /redoc) from the same local assets: nothing comes from another host."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from assign.ui import render

STATIC = render.HERE / "static"


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, their scripts and styles served from /docs/static."""
    app.mount("/docs/static", StaticFiles(directory=STATIC / "vendor"), name="docs-static")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=prefix + "/openapi.json",
            title=f"{app.title} — API docs",
            swagger_js_url=prefix + "/docs/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=prefix + "/docs/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=prefix + "/docs/static/swagger-ui/favicon-32x32.png",
            # no badge from validator.swagger.io: nothing is fetched from another host
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_redoc_html(
            openapi_url=prefix + "/openapi.json",
            title=f"{app.title} — API reference",
            redoc_js_url=prefix + "/docs/static/redoc/redoc.standalone.js",
            redoc_favicon_url=prefix + "/docs/static/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )


def install_console(app: FastAPI) -> None:
    """The console's pages, actions and static files under /ui."""
    from assign.ui import actions, auth, pages

    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    for router in (auth.router, pages.router, actions.router):
        app.include_router(router)
    auth.install_handlers(app)
