"""Which links an operator means: the filters of the console's Links page (and its bulk actions)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True)
class LinkFilter:
    """Every field None means "any"; ``error`` matches links whose error contains it."""

    statuses: tuple[str, ...] = ()
    request_id: uuid.UUID | None = None
    server_id: uuid.UUID | None = None
    email: str | None = None
    site_id: uuid.UUID | None = None
    service_type: str | None = None
    error: str | None = None

    @property
    def is_empty(self) -> bool:
        return self == LinkFilter()


class LinkScope(TypedDict):
    """What the worker API's link listings (``GET /links``, stale or not) narrow by, passed on
    from the route to the query as keyword arguments."""

    service_type: str | None
    request_id: uuid.UUID | None
    server_id: uuid.UUID | None
    limit: int
