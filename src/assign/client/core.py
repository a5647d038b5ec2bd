"""What the sync and async clients share: a call is described once (method, path, query, body,
how to read the answer), then sent by an ``httpx.Client`` or an ``httpx.AsyncClient``.

Each endpoint is written once, as a method that builds a :class:`Call`, and decorated with
:class:`endpoint`. Read from a sync client it sends the call and returns the result; read from an
async client it returns an awaitable of the same result.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

import httpx

from assign import __version__

T = TypeVar("T")
P = ParamSpec("P")

USER_AGENT = f"assign-client/{__version__}"
DEFAULT_TIMEOUT = 30.0


class ApiError(Exception):
    """A non-2xx answer of an Assign service.

    ``status_code`` is the HTTP status, ``message`` the server's one-sentence ``error``,
    ``details`` its list of ``{"field", "message"}`` for invalid input (else empty).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.details = details or []
        self.method = method
        self.url = url
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status_code} {self.message}"
        if self.details:
            text += (
                " ("
                + "; ".join(f"{d.get('field')}: {d.get('message')}" for d in self.details)
                + ")"
            )
        if self.method:
            text += f" [{self.method} {self.url}]"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The error an answer carries: its envelope when it is one, else its status line."""
        message, details = response.reason_phrase or "HTTP error", None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
            if isinstance(body.get("details"), list):
                details = body["details"]
        retry_after = response.headers.get("Retry-After")
        return cls(
            response.status_code,
            message,
            details,
            method=response.request.method,
            url=str(response.request.url),
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )


def _no_parse(response: httpx.Response) -> Any:
    return response.json()


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP exchange: what to send and how to turn a 2xx answer into ``T``."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T] = _no_parse
    params: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None

    def result(self, response: httpx.Response) -> T:
        if not response.is_success:
            raise ApiError.from_response(response)
        return self.parse(response)


# --- readers of an answer ------------------------------------------------------------------


def data(response: httpx.Response) -> Any:
    """``{"success": true, "data": X}`` -> ``X``."""
    return response.json()["data"]


def body(response: httpx.Response) -> Any:
    """The answer without its ``success`` flag."""
    out = response.json()
    out.pop("success", None)
    return out


def field(name: str) -> Callable[[httpx.Response], Any]:
    """``{"success": true, name: X}`` -> ``X``."""
    return lambda response: response.json()[name]


def text(response: httpx.Response) -> str:
    return response.text


# --- building a call -----------------------------------------------------------------------


def query(**params: Any) -> dict[str, str]:
    """Query parameters: None dropped, sequences comma-joined, booleans ``true``/``false``."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | uuid.UUID | int | float):
            out[key] = str(value)
        elif isinstance(value, Sequence):
            out[key] = ",".join(str(v) for v in value)
        else:
            raise TypeError(f"query parameter {key!r}: unsupported {type(value).__name__}")
    return out


def payload(**fields: Any) -> dict[str, Any]:
    """A JSON body from keyword arguments: None dropped, UUIDs as strings."""
    return {k: jsonable(v) for k, v in fields.items() if v is not None}


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def idempotent(key: str | None) -> dict[str, str] | None:
    """The ``Idempotency-Key`` header: a create sent again with the same key runs once."""
    return {"Idempotency-Key": key} if key else None


def ident(value: str | uuid.UUID) -> str:
    """An id for a path segment (a UUID string; checked so a typo fails here, not as a 404)."""
    return str(uuid.UUID(str(value)))


# --- sending -------------------------------------------------------------------------------


#: the httpx client a client sends with, and the transport that client takes
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
Transport = TypeVar("Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _Base(Generic[H, Transport]):
    #: makes the httpx client when none is passed as ``http``
    _new_http: Callable[..., H]

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: Transport | None = None,
        http: H | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"X-API-Key": api_key, "User-Agent": USER_AGENT}
        self._owned = http is None
        self.http: H = http or self._new_http(timeout=timeout, transport=transport)

    def _request(self, call: Call[Any]) -> httpx.Request:
        """The HTTP request ``call`` sends."""
        headers = {**self.headers, **call.headers} if call.headers else self.headers
        return self.http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            json=call.json,
            headers=headers,
        )


class SyncBase(_Base[httpx.Client, httpx.BaseTransport]):
    """Sends calls with an ``httpx.Client`` (its own, or one passed as ``http``)."""

    _new_http = httpx.Client

    def _send(self, call: Call[T]) -> T:
        return call.result(self.http.send(self._request(call)))

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncBase(_Base[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """Sends calls with an ``httpx.AsyncClient`` (its own, or one passed as ``http``)."""

    _new_http = httpx.AsyncClient

    async def _send(self, call: Call[T]) -> T:
        return call.result(await self.http.send(self._request(call)))

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class endpoint(Generic[P, T]):  # lower case: a decorator, like property
    """Turns a method building a ``Call[T]`` into one returning ``T`` (sync client) or
    ``Awaitable[T]`` (async client)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: SyncBase, owner: type | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncBase, owner: type | None = None) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        build = self.build
        send = cast(Callable[[Call[T]], Any], obj._send)

        @functools.wraps(build)
        def bound(*args: P.args, **kwargs: P.kwargs) -> Any:
            return send(build(obj, *args, **kwargs))

        return bound
