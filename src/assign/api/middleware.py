"""Pure ASGI middleware: request context (id, access log, metrics, last-resort errors),
authentication by ``X-API-Key`` per surface, and the request body cap."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assign import logging as assign_logging
from assign import metrics
from assign.api import body_check
from assign.api.errors import STATUS_MESSAGES, error_type
from assign.api.responses import error
from assign.db.engine import DatabaseUnavailable, is_connection_error
from assign.security import keys
from assign.services.keys import Owner

log = logging.getLogger("assign.access")

#: what a read-only admin key may do
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SURFACES = {"/api/v1/worker": "worker", "/api/v1/tool": "tool", "/api/v1/admin": "admin"}
#: The only paths served without a key, each with everything under it: health, metrics, the
#: API documents and their static files, and the console (which checks its own session).
PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/static",
                "/ui")  # fmt: skip


@dataclass(frozen=True)
class Principal:
    kind: str  # worker | tool | admin
    server_id: uuid.UUID | None
    key_hash: str
    #: an admin key that may only read: its writes are refused (403)
    read_only: bool = False


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def surface_of(path: str) -> str | None:
    for prefix, kind in SURFACES.items():
        if _under(path, prefix):
            return kind
    return None


def is_public(path: str) -> bool:
    """Whether ``path`` (a route path) is served without a key."""
    return any(_under(path, prefix) for prefix in PUBLIC_PATHS)


def route_path(scope: Scope) -> str:
    """The path the application's router matches on: ``scope["path"]`` after any ASGI
    ``root_path`` (Starlette's own function, so the two can never disagree)."""
    return get_route_path(scope)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so the framework passes it through as a 413."""

    def __init__(self) -> None:
        super().__init__(413)


class HTTPMiddleware:
    """A pure ASGI middleware of HTTP requests: any other scope (lifespan, websocket) passes
    through untouched. A subclass handles the requests (:meth:`handle`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestContextMiddleware(HTTPMiddleware):
    """Request id, one access-log line, metrics; any exception becomes an envelope, never a trace."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = _header(scope, b"x-request-id") or uuid.uuid4().hex
        rid = rid[:64]
        token = assign_logging.request_id.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if response_started:
                log.error("error after response started", exc_info=exc)
            else:
                if isinstance(exc, BodyTooLarge):
                    response = error(413, STATUS_MESSAGES[413])
                elif isinstance(exc, DatabaseUnavailable) or is_connection_error(exc):
                    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
                    log.warning(
                        "database unavailable", extra={"error_type": error_type(cause or exc)}
                    )
                    response = error(503, STATUS_MESSAGES[503], headers={"Retry-After": "1"})
                else:
                    log.error("unhandled error", exc_info=exc)
                    response = error(500, STATUS_MESSAGES[500])
                await response(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.http_requests.labels(method, template, str(status)).inc()
            metrics.http_latency.labels(method, template).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            assign_logging.request_id.reset(token)


class AuthMiddleware(HTTPMiddleware):
    """Checks ``X-API-Key`` before anything else, and fails closed: each surface takes one kind
    of key, every other path but the public ones any valid key (401 otherwise)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        kind = surface_of(path) or ("public" if is_public(path) else "any")
        if kind == "public":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        key = _header(scope, b"x-api-key")
        principal = await authenticate(state, kind, key) if key else None
        if principal is None:
            message = "Missing X-API-Key header" if not key else _wrong_key_message(kind)
            await error(401, message, headers={"WWW-Authenticate": "X-API-Key"})(
                scope, receive, send
            )
            return
        if principal.read_only and scope["method"] not in READ_METHODS:
            await error(403, "This admin key is read-only")(scope, receive, send)
            return
        limiter = getattr(state, "rate_limiter", None)
        if limiter is not None:
            wait = limiter.acquire(principal.key_hash)
            if wait > 0:
                await error(
                    429,
                    "Too many requests for this API key",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )(scope, receive, send)
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _wrong_key_message(kind: str) -> str:
    return {
        "worker": "Invalid API key or not an assign server",
        "tool": "Invalid API key or not a tool server",
        "admin": "Invalid admin key",
        "any": "Invalid API key",
    }[kind]


async def authenticate(state: Any, kind: str, key: str) -> Principal | None:
    """The principal behind ``key`` when it may use surface ``kind`` (``any``: any valid key),
    else None."""
    from assign.services import catalog, servers

    if kind == "any":
        for surface in ("admin", "worker", "tool"):
            principal = await authenticate(state, surface, key)
            if principal is not None:
                return principal
        return None
    ctx = state.ctx
    digest = keys.hash_key(key)
    if kind == "admin":
        admin_key = ctx.settings.admin_key
        if admin_key and keys.same_key(key, keys.hash_key(admin_key)):
            return Principal("admin", None, digest)
    owner = ctx.known_keys.get(digest)
    if owner is None:
        if kind == "admin":
            read_only = await catalog.admin_key_read_only(ctx, key_hash=digest)
            owner = None if read_only is None else Owner(None, None, read_only)
        else:
            found = await servers.find_by_key(ctx, key_hash=digest)
            owner = None if found is None else Owner(found[0], found[1])
        if owner is None:
            return None
        ctx.known_keys.put(digest, owner)
    if kind == "admin":
        if owner.server_id is not None:
            return None
        return Principal("admin", None, digest, read_only=owner.read_only)
    if owner.server_id is None or owner.service is None:
        return None
    if servers.is_assign_server(owner.service) != (kind == "worker"):
        return None
    return Principal(kind, owner.server_id, digest)


class BodyLimitMiddleware(HTTPMiddleware):
    """413 for a body over ``max_bytes``, by Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await error(413, STATUS_MESSAGES[413])(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited, send)


#: the answers to a body no API route may read (PRODUCT §9)
NOT_JSON = "Invalid request: Content-Type must be application/json"
TOO_DEEP = (
    f"Invalid request: the body nests arrays and objects deeper than {body_check.MAX_BODY_DEPTH} "
    "levels"
)


class JSONBodyMiddleware(HTTPMiddleware):
    """On the API surfaces a body must be JSON: a body with another (or no) ``Content-Type``,
    or nested deeper than 64 levels, is a 400 before any route reads it. The body is read here
    and handed on whole."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "HEAD", "OPTIONS") or surface_of(route_path(scope)) is None:
            await self.app(scope, receive, send)
            return
        body, cut_short = await read_body(receive)
        if cut_short is not None:  # the client went away: let the route see it
            await self.app(scope, replay(body, receive, cut_short), send)
            return
        problem = None
        if body and not body_check.is_json_type(_header(scope, b"content-type")):
            problem = (NOT_JSON, "must be application/json", "Content-Type")
        elif body_check.too_deep(body):
            problem = (TOO_DEEP, TOO_DEEP.removeprefix("Invalid request: the body "), "body")
        if problem is not None:
            message_text, detail, field = problem
            details = [{"field": field, "message": detail}]
            await error(400, message_text, details)(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)


async def read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The request's body, and the message that cut it short (the client went away) or None."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay(body: bytes, receive: Receive, then: Message | None = None) -> Receive:
    """A ``receive`` that gives ``body`` in one message, then ``then`` or what ``receive`` gives."""
    given = False

    async def replayed() -> Message:
        nonlocal given, then
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": then is not None}
        if then is not None:
            message, then = then, None
            return message
        return await receive()

    return replayed


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            try:
                return value.decode("latin-1")
            except UnicodeDecodeError:
                return None
    return None
