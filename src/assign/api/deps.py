"""Annotated dependencies and query-parameter parsing shared by the routers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader

from assign.api.middleware import Principal
from assign.domain.states import SERVICE_TYPES
from assign.errors import InvalidInput
from assign.services.context import Context

MAX_LIMIT = 1000
#: the largest number of minutes a query takes (about 190 years; keeps date arithmetic in range)
MAX_MINUTES = 100_000_000

# documents the X-API-Key scheme in OpenAPI; the key itself is checked by AuthMiddleware
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")


# dependencies are ``async def``: FastAPI runs a plain ``def`` one in a worker thread, a
# thread hand-off per dependency per request
async def _ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def _principal(request: Request) -> Principal:
    return request.scope["state"]["principal"]  # type: ignore[no-any-return]


NUL_MESSAGE = "must not contain NUL characters"


async def _reject_nul(request: Request) -> None:
    """NUL characters cannot be stored (PostgreSQL refuses them): a 400 wherever they appear."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput.field(name, NUL_MESSAGE)
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise InvalidInput.field(name.replace("\x00", ""), NUL_MESSAGE)
    for name, value in request.headers.items():
        if "\x00" in value:
            raise InvalidInput.field(name, NUL_MESSAGE)


Ctx = Annotated[Context, Depends(_ctx)]
Caller = Annotated[Principal, Depends(_principal)]
#: dependencies of every API surface: the key scheme (for the docs) and the NUL check
secured = [Depends(api_key_scheme), Depends(_reject_nul)]
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def list_pattern(values: Iterable[str]) -> str:
    """The comma-separated lists ``parse_statuses`` accepts (spaces around and empty items too)."""
    alt = "|".join(re.escape(v) for v in values)
    return f"^ *(?:(?:{alt}) *)?(?:, *(?:(?:{alt}) *)?)*$"


def choice_pattern(values: Iterable[str]) -> str:
    """One of ``values`` or empty (no filter), as ``parse_choice`` accepts."""
    return f"^(?:{'|'.join(re.escape(v) for v in values)})?$"


IDS_PATTERN = f"^ *(?:{UUID_PATTERN} *(?:, *{UUID_PATTERN} *)*)?$"


def status_query(allowed: type[StrEnum], description: str = "comma-separated") -> Any:
    """A comma-separated status filter, documented with exactly what ``parse_statuses`` accepts."""
    names = [m.value for m in allowed]
    return Query(
        description=f"{description}: {', '.join(names)}",
        json_schema_extra={"pattern": list_pattern(names)},
    )


def choice_query(values: Iterable[str], description: str | None = None) -> Any:
    """One of ``values``; empty means no filter (as ``parse_choice`` accepts)."""
    values = tuple(values)
    return Query(
        description=description or ", ".join(values),
        json_schema_extra={"pattern": choice_pattern(values)},
    )


def required_query(description: str | None = None) -> Any:
    """A query parameter the handler requires non-empty, with its own 400 (``is required``).

    ``x-required`` is turned into the parameter's ``required`` by the OpenAPI post-processing.
    """
    return Query(description=description, json_schema_extra={"x-required": True, "minLength": 1})


#: ``limit`` as documented everywhere: at least 1 (checked by ``clamp_limit``), larger is clamped
Limit = Annotated[
    int,
    Query(
        description="default 100, at least 1, at most 1000 (larger is clamped)",
        json_schema_extra={"minimum": 1},
    ),
]
#: a service type to filter by (empty: any)
ServiceTypeQ = Annotated[str | None, choice_query(SERVICE_TYPES)]


def clamp_limit(limit: int, field: str = "limit") -> int:
    """``limit`` below 1 is a 400; above 1000 is clamped to 1000."""
    if limit < 1:
        raise InvalidInput.field(field, "must be at least 1")
    return min(limit, MAX_LIMIT)


def parse_statuses(
    raw: str | None, allowed: type[StrEnum], field: str = "status"
) -> list[str] | None:
    """``"pending,running"`` -> ``["pending", "running"]``; an unknown value is a 400 listing those
    allowed.

    Items are separated by commas, may have spaces around them and may be empty; no item at all
    (or no parameter) is None: the caller's default. Exactly what ``list_pattern`` documents.
    """
    if raw is None:
        return None
    values = [part.strip(" ") for part in raw.split(",")]
    values = [v for v in values if v]
    names = [m.value for m in allowed]
    bad = [v for v in values if v not in names]
    if bad:
        raise InvalidInput.field(
            field, f"unknown value {', '.join(repr(b) for b in bad)}; allowed: {', '.join(names)}"
        )
    return list(dict.fromkeys(values)) or None


_UUID = re.compile(UUID_PATTERN)


def parse_ids(raw: str | None, field: str) -> list[uuid.UUID] | None:
    """``"id1, id2"`` -> UUIDs (canonical 8-4-4-4-12 form); empty is None. As ``IDS_PATTERN``."""
    if raw is None or raw.strip(" ") == "":
        return None
    out = []
    for part in raw.split(","):
        value = part.strip(" ")
        if not _UUID.fullmatch(value):
            raise InvalidInput.field(field, f"{value!r} is not a UUID")
        out.append(uuid.UUID(value))
    return out


def parse_choice(raw: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise InvalidInput.field(field, f"unknown value {raw!r}; allowed: {', '.join(allowed)}")
    return raw
