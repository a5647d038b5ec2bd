"""Annotated dependencies and query-parameter parsing shared by the routers."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from assign.api.middleware import Principal
from assign.errors import InvalidInput
from assign.services.context import Context

MAX_LIMIT = 1000

# documents the X-API-Key scheme in OpenAPI; the key itself is checked by AuthMiddleware
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")


def _ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _principal(request: Request) -> Principal:
    return request.scope["state"]["principal"]  # type: ignore[no-any-return]


Ctx = Annotated[Context, Depends(_ctx)]
Caller = Annotated[Principal, Depends(_principal)]
secured = [Depends(api_key_scheme)]


def clamp_limit(limit: int, field: str = "limit") -> int:
    """``limit`` below 1 is a 400; above 1000 is clamped to 1000."""
    if limit < 1:
        raise InvalidInput.field(field, "must be at least 1")
    return min(limit, MAX_LIMIT)


def parse_statuses(
    raw: str | None, allowed: type[StrEnum], field: str = "status"
) -> list[str] | None:
    """``"pending,running"`` -> ``["pending", "running"]``; an unknown value is a 400 listing the allowed."""
    if raw is None or raw.strip() == "":
        return None
    values = [v.strip().lower() for v in raw.split(",") if v.strip()]
    names = [m.value for m in allowed]
    bad = [v for v in values if v not in names]
    if bad:
        raise InvalidInput.field(
            field, f"unknown value {', '.join(repr(b) for b in bad)}; allowed: {', '.join(names)}"
        )
    return list(dict.fromkeys(values))


def parse_ids(raw: str | None, field: str) -> list[uuid.UUID] | None:
    if raw is None or raw.strip() == "":
        return None
    out = []
    for part in raw.split(","):
        try:
            out.append(uuid.UUID(part.strip()))
        except ValueError:
            raise InvalidInput.field(field, f"{part.strip()!r} is not a UUID") from None
    return out


def parse_choice(raw: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise InvalidInput.field(field, f"unknown value {raw!r}; allowed: {', '.join(allowed)}")
    return raw
