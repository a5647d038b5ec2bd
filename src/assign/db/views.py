"""Rows to plain dicts in the shapes the API answers with (passwords never included)."""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy.engine import Row

from assign.db.tables import links

#: a row of any width (SQLAlchemy types rows by their columns)
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

SERVER_FIELDS = (
    "id", "name", "ip", "service", "status", "active_threads", "active_tasks", "max_threads",
    "priority", "service_types", "last_health_check", "last_active", "created_at", "updated_at",
)  # fmt: skip
REQUEST_FIELDS = (
    "id", "user_id", "service_type", "group_id", "name", "website", "auction_price", "target",
    "created_links", "status", "type_request", "priority", "config", "data", "folder_urls",
    "started_at", "completed_at", "created_at", "updated_at",
)  # fmt: skip
#: a link as the API shows it: the table's columns in their order, but for the password and
#: the dispatcher's own bookkeeping (``LinkOut`` is checked against it in tests/unit)
LINK_FIELDS = tuple(
    c.name for c in links.c if c.name not in {"password_enc", "priority", "retry_at"}
)
SITE_FIELDS = ("id", "name", "type", "active", "config", "created_at", "updated_at")
ACCOUNT_FIELDS = ("id", "group_id", "email", "username", "status", "created_at", "updated_at")


def as_dict(row: Row[Any] | Any, fields: tuple[str, ...]) -> dict[str, Any]:
    mapping = row._mapping
    return {name: mapping[name] for name in fields}


def server(row: Row[Any]) -> dict[str, Any]:
    out = as_dict(row, SERVER_FIELDS)
    out["avail_slots"] = max(0, out["max_threads"] - out["active_tasks"])
    return out


def request(row: Row[Any]) -> dict[str, Any]:
    out = as_dict(row, REQUEST_FIELDS)
    out["auction_price"] = number(out["auction_price"])
    return out


def number(value: float | None) -> float | int | None:
    """A stored floating-point number as it was given: a whole one as a JSON integer (``100``
    stays ``100``, ``99.5`` stays ``99.5``), in the create's answer and every later read alike."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def link(row: Row[Any]) -> dict[str, Any]:
    return as_dict(row, LINK_FIELDS)


def site(row: Row[Any]) -> dict[str, Any]:
    return as_dict(row, SITE_FIELDS)


def account(row: Row[Any]) -> dict[str, Any]:
    return as_dict(row, ACCOUNT_FIELDS)
