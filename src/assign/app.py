"""The ASGI application: the three API surfaces, health, metrics and docs over one database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from assign import __version__, ui
from assign.api import errors, fast_routes
from assign.api.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    JSONBodyMiddleware,
    RequestContextMiddleware,
)
from assign.api.ratelimit import RateLimiter
from assign.api.routers import admin, health, history, tool, worker
from assign.api.schemas.common import JSON_VALUE_SCHEMA
from assign.api.schemas.inputs import LinksBulkIn
from assign.clock import Clock
from assign.db.engine import Database
from assign.db.migrate import upgrade_async
from assign.security.secret import make_cipher
from assign.services.context import Context
from assign.services.keys import KeyCache
from assign.settings import Settings

log = logging.getLogger("assign")

DESCRIPTION = """
Assign dispatches units of link-building work ("links") to a fleet of tool servers.

* **Worker API** (`/api/v1/worker`): for assign-server keys; the documented seed API.
* **Tool API** (`/api/v1/tool`): for tool-server keys: heartbeat, claim, result.
* **Admin API** (`/api/v1/admin`): for admin keys: servers and keys, requests, sites, accounts, settings.

Every call carries `X-API-Key`. Errors answer `{"success": false, "error": "...", "details": [...]}`.
No string, in a parameter or anywhere in a body, may contain a NUL character (`\\u0000`): 400.
"""


def build_context(settings: Settings, clock: Clock | None = None) -> Context:
    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        session_url=settings.direct_database_url,
    )
    return Context(
        db=db,
        settings=settings,
        cipher=make_cipher(settings),
        clock=clock or Clock(),
        known_keys=KeyCache(settings.key_cache_seconds),
    )


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
        migrate = settings.uses_sqlite_file
    app = FastAPI(
        title="Assign",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, context=context, migrate=migrate, dispatcher=dispatcher),
        docs_url=None,  # served from local assets by assign.ui.install_docs
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
    for router in (worker.router, tool.router, admin.router, history.router, health.router):
        app.include_router(router)
    # first: the tool server's per-link calls, when they are the ordinary case (fast_routes)
    app.router.routes[0:0] = fast_routes.routes()
    ui.install_docs(app)
    if settings.ui:
        ui.install_console(app)
    # outermost last: context -> auth -> body limit -> JSON body -> routes
    app.add_middleware(JSONBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _lifespan(
    settings: Settings, *, context: Context | None, migrate: bool, dispatcher: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the application does as it starts and stops: migrate (when asked), build the
    context (unless given), run the dispatcher in this process (when asked), close down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade_async(settings.migration_url)
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
            await ctx.hub.close()  # the claim listener and wake-up sender of this process
            await ctx.result_batches.close()  # none in flight once the requests have ended
            if context is None:
                await ctx.db.dispose()

    return lifespan


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, made to say exactly what the API accepts and answers.

    * No 422 answers: invalid input is a 400 here.
    * A query, path or header parameter is never null (absent means its default), and one
      marked ``x-required`` (checked by its handler, with its own message) is required.
    * Free-form JSON fields (``dict[str, Any]``, ``list[Any]``) hold ``JsonValue``s: what the
      request models accept there (see ``json_problem``).
    * An operation with a body may answer 413 (body over ``ASSIGN_MAX_BODY_MB``), and a create
      that takes an ``Idempotency-Key`` a 409 (the key was used with another body).
    """
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for parameter in operation.get("parameters", []):
                _non_null_parameter(parameter)
            if "requestBody" in operation:
                responses.setdefault("413", _error_response("Body too large"))
            if any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
                responses.setdefault(
                    "409", _error_response("Idempotency-Key already used with another body")
                )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    # bodies that an endpoint reads itself (see bulk_body): their models, as FastAPI writes them
    for model in (LinksBulkIn,):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    _free_form_json(components)
    components["JsonValue"] = JSON_VALUE_SCHEMA
    app.openapi_schema = schema
    return schema


def _free_form_json(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _free_form_json(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" and node.get("additionalProperties") is True:
        node["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}
    if node.get("type") == "array" and node.get("items") == {}:
        node["items"] = {"$ref": "#/components/schemas/JsonValue"}
    for value in node.values():
        _free_form_json(value)


def _error_response(description: str) -> dict[str, Any]:
    envelope = {"$ref": "#/components/schemas/ErrorOut"}
    return {"description": description, "content": {"application/json": {"schema": envelope}}}


def _non_null_parameter(parameter: dict[str, Any]) -> None:
    value = parameter.get("schema", {})
    branches = value.get("anyOf")
    if branches:
        kept = [b for b in branches if b.get("type") != "null"]
        if len(kept) == 1:
            del value["anyOf"]
            value.update(kept[0])
        else:
            value["anyOf"] = kept
    if value.pop("x-required", False):
        parameter["required"] = True
