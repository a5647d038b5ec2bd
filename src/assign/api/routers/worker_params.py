"""Parameters and responses the worker API's routers share."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from assign.api.deps import MAX_MINUTES, parse_choice
from assign.api.schemas.common import error_responses
from assign.domain.states import SERVICE_TYPES

NotFound = error_responses(404)
Conflict = error_responses(404, 409)


def minutes(description: str) -> Any:
    """A query parameter of minutes, from 0 to ``MAX_MINUTES``."""
    return Query(ge=0, le=MAX_MINUTES, allow_inf_nan=False, description=description)


def service_type_of(value: str | None, field: str = "service_type") -> str | None:
    """The service type ``value`` names (400 naming ``field`` when it is none of them)."""
    return parse_choice(value, SERVICE_TYPES, field)
