"""Every failure answers with the error envelope; no stack trace or SQL ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from assign.api.responses import error
from assign.db.engine import DatabaseUnavailable
from assign.errors import AppError

log = logging.getLogger("assign.api")

STATUS_MESSAGES = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    500: "Internal server error",
    503: "Database unavailable",
}


BODY_REQUIRED = "a JSON body is required (Content-Type: application/json)"


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "links", 3, "request_id")`` -> ``links[3].request_id``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            message = "body is not valid JSON"
        elif err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",):
            message = BODY_REQUIRED
        elif err.get("type") == "value_error":
            message = message.removeprefix("Value error, ")
        # a JSON syntax error is located at ("body", offset): the bad field is the body
        field = "body" if err.get("type") == "json_invalid" else field_path(err.get("loc", ()))
        details.append({"field": field, "message": message})
    return details


def validation_response(exc: RequestValidationError) -> Response:
    details = validation_details(exc)
    if any(d["message"] == BODY_REQUIRED for d in details):  # no body, so no Content-Type
        return error(400, "Invalid request: a body of type application/json is expected", details)
    fields = ", ".join(dict.fromkeys(d["field"] for d in details[:10]))
    return error(400, f"Invalid request: check {fields}", details[:200])


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (the router names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods.update(route_methods)
    return ", ".join(sorted(methods))


def error_type(exc: BaseException) -> str:
    """``sqlalchemy.exc.TimeoutError``, ``ConnectionRefusedError``: the module unless builtin."""
    kind = type(exc)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        return validation_response(exc)

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> Response:
        headers = getattr(exc, "headers", None)
        return error(exc.status_code, exc.message, exc.details, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = STATUS_MESSAGES.get(exc.status_code, "Request failed")
        headers = getattr(exc, "headers", None)
        details = None
        if exc.status_code == 404:
            message = "No such route"
        elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # e.g. JSON nested too deeply for the parser
            message = "Invalid request: check body"
            details = [{"field": "body", "message": "could not be parsed"}]
        elif exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error(exc.status_code, message, details, headers=headers)

    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(_: Request, exc: DatabaseUnavailable) -> Response:
        # the cause tells a database that is down from a pool with no free connection
        log.warning("database unavailable", extra={"error_type": error_type(exc.__cause__ or exc)})
        return error(503, STATUS_MESSAGES[503], headers={"Retry-After": "1"})
