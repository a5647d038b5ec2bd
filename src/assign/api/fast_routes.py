"""The two calls a tool server makes for every link, ``PUT /api/v1/tool/links/{id}/result``
and ``POST /api/v1/tool/links/claim``, served without FastAPI's route matching and dependency
solving when the request is the ordinary case.

They are most of a fleet's calls, and the framework's share of each was most of the API's CPU
(matching against every route, solving the dependencies, the per-route wrappers). A route put
first in the router takes such a call only when there is nothing for the framework to decide:
no query string, no NUL in a header, a caller that is a tool server, a body that is a JSON
object (or, for a claim, no body) which the route's own pydantic model accepts. It then calls
the route's own endpoint function with what FastAPI would have passed, so the answer, its
errors (raised to the same exception handlers) and its logging are the route's. Any other
request goes on through the router to the FastAPI route, which answers it exactly as before
(e.g. each 400 naming its field).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from assign.api.middleware import read_body, replay, route_path
from assign.api.routers import tool as tool_routes
from assign.api.schemas import inputs

#: set in a request's scope once a fast route declined it: the router's next pass skips them
DECLINED = "assign.fast_route_declined"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

Serve = Callable[[Scope, Receive, Any, re.Match[str]], Awaitable[Response]]


class _Declined(Exception):
    """The request is not the ordinary case: the FastAPI route answers it."""


class FastRoute(BaseRoute):
    def __init__(self, method: str, path: str, pattern: str, serve: Serve) -> None:
        self.method = method
        #: the route's template, as the request log and the metrics label it
        self.path = path
        self._pattern = re.compile(pattern)
        self._serve = serve
        #: requests taken, and requests handed on to the FastAPI route (for the tests)
        self.taken = 0
        self.declined = 0

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] != "http"
            or scope["method"] != self.method
            or DECLINED in scope
            or scope.get("query_string")
        ):
            return Match.NONE, {}
        found = self._pattern.fullmatch(route_path(scope))
        if found is None or _principal_server(scope) is None:
            return Match.NONE, {}
        if any(b"\x00" in value for _, value in scope.get("headers", ())):
            return Match.NONE, {}
        return Match.FULL, {"route": self, "assign.fast_match": found}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, cut_short = await read_body(receive)
        try:
            if cut_short is not None:  # the client went away while sending: the route sees it
                raise _Declined
            response = await self._serve(scope, receive, body, scope["assign.fast_match"])
        except _Declined:
            self.declined += 1
            scope[DECLINED] = True
            for key in ("route", "assign.fast_match"):
                scope.pop(key, None)
            await scope["router"](scope, replay(body, receive, cut_short), send)
            return
        except Exception:
            self.taken += 1  # the route's own error (404, 409, ...), raised to its handlers
            raise
        self.taken += 1
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # never a target of url_for


def _principal_server(scope: Scope) -> uuid.UUID | None:
    principal = scope.get("state", {}).get("principal")
    return getattr(principal, "server_id", None)


def _model(model: type[BaseModel], body: bytes) -> Any:
    """``model`` of the body as FastAPI would make it, or _Declined."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Declined from exc
    if not isinstance(data, dict):
        raise _Declined
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _Declined from exc


async def _result(scope: Scope, receive: Receive, body: bytes, found: re.Match[str]) -> Response:
    report = _model(inputs.ResultIn, body)
    ctx = scope["app"].state.ctx
    principal = scope["state"]["principal"]
    return await tool_routes.report_result(ctx, principal, uuid.UUID(found[1]), report)


async def _claim(scope: Scope, receive: Receive, body: bytes, found: re.Match[str]) -> Response:
    wanted = _model(inputs.ClaimIn, body) if body else None
    ctx = scope["app"].state.ctx
    principal = scope["state"]["principal"]
    return await tool_routes.claim(Request(scope, receive), ctx, principal, wanted)


def routes() -> list[BaseRoute]:
    return [
        FastRoute(
            "PUT",
            "/api/v1/tool/links/{link_id}/result",
            f"/api/v1/tool/links/({_UUID})/result",
            _result,
        ),
        FastRoute("POST", "/api/v1/tool/links/claim", "/api/v1/tool/links/claim", _claim),
    ]
