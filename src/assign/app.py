"""The ASGI application: the three API surfaces, health, metrics and docs over one database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from assign import __version__
from assign.api import errors
from assign.api.middleware import AuthMiddleware, BodyLimitMiddleware, RequestContextMiddleware
from assign.api.ratelimit import RateLimiter
from assign.api.routers import admin, health, tool, worker
from assign.clock import Clock
from assign.db.engine import Database
from assign.db.migrate import upgrade_async
from assign.security.secret import make_cipher
from assign.services.context import Context
from assign.settings import Settings

log = logging.getLogger("assign")

DESCRIPTION = """
Assign dispatches units of link-building work ("links") to a fleet of tool servers.

* **Worker API** (`/api/v1/worker`): for assign-server keys; the documented seed API.
* **Tool API** (`/api/v1/tool`): for tool-server keys: heartbeat, claim, result.
* **Admin API** (`/api/v1/admin`): for admin keys: servers and keys, requests, sites, accounts, settings.

Every call carries `X-API-Key`. Errors answer `{"success": false, "error": "...", "details": [...]}`.
"""


def build_context(settings: Settings, clock: Clock | None = None) -> Context:
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    return Context(db=db, settings=settings, cipher=make_cipher(settings), clock=clock or Clock())


def create_app(
    settings: Settings | None = None,
    *,
    context: Context | None = None,
    migrate: bool | None = None,
    dispatcher: bool = False,
) -> FastAPI:
    """The application. ``migrate`` defaults to True on SQLite (the embedded default)."""
    settings = settings or (context.settings if context else Settings())
    if migrate is None:
        migrate = settings.is_sqlite

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade_async(settings.database_url)
        ctx = context or build_context(settings)
        app.state.ctx = ctx
        task: asyncio.Task[Any] | None = None
        stop = asyncio.Event()
        if dispatcher:
            from assign.dispatcher.loop import run_dispatcher

            task = asyncio.create_task(run_dispatcher(ctx, stop=stop), name="dispatcher")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            if context is None:
                await ctx.db.dispose()

    app = FastAPI(
        title="Assign",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.rate_limiter = (
        RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
    )
    if context is not None:
        app.state.ctx = context
    errors.install(app)
    for router in (worker.router, tool.router, admin.router, health.router):
        app.include_router(router)
    # outermost last: context -> auth -> body limit -> routes
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, minus FastAPI's 422 answers: invalid input is a 400 here."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema
