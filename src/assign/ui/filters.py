"""Reading the console's query parameters and form fields: named as in the API, checked alike."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from assign.api.deps import parse_choice, parse_ids, parse_statuses
from assign.domain.filters import LinkFilter
from assign.domain.states import SERVICE_TYPES, LinkStatus, RequestStatus
from assign.errors import InvalidInput

#: the Links page's filters: query parameter -> label
LINK_FILTERS = {
    "status": "Status",
    "request_id": "Request",
    "server_id": "Server",
    "email": "Email",
    "site_id": "Site",
    "service_type": "Service type",
    "error": "Error",
}
LINK_STATUSES = tuple(s.value for s in LinkStatus)
REQUEST_STATUSES = tuple(s.value for s in RequestStatus)


def one_id(raw: str | None, field: str) -> uuid.UUID | None:
    ids = parse_ids(raw, field)
    if ids and len(ids) > 1:
        raise InvalidInput.field(field, "give one id")
    return ids[0] if ids else None


def text(raw: str | None, field: str, limit: int = 500) -> str | None:
    value = (raw or "").strip()
    if "\x00" in value:
        raise InvalidInput.field(field, "must not contain NUL characters")
    if len(value) > limit:
        raise InvalidInput.field(field, f"at most {limit} characters")
    return value or None


def link_filter(params: Mapping[str, str]) -> LinkFilter:
    """The filter of the Links page (a 400 naming the field when one is not valid)."""
    return LinkFilter(
        statuses=tuple(parse_statuses(params.get("status"), LinkStatus) or ()),
        request_id=one_id(params.get("request_id"), "request_id"),
        server_id=one_id(params.get("server_id"), "server_id"),
        email=text(params.get("email"), "email", 320),
        site_id=one_id(params.get("site_id"), "site_id"),
        service_type=parse_choice(params.get("service_type"), SERVICE_TYPES, "service_type"),
        error=text(params.get("error"), "error"),
    )


def filter_params(params: Mapping[str, str]) -> dict[str, str]:
    """The non-empty filter parameters, to carry into links and forms."""
    return {name: params[name] for name in LINK_FILTERS if params.get(name)}
