"""JSON responses encoded with orjson (UUIDs and datetimes as RFC 3339 UTC ``...Z``)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.responses import Response

from assign.db.json import JSONArray

OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    # asyncpg returns its own UUID class, which orjson does not know
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=OPTIONS)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):  # encoded already
            return content
        return dumps(content)


def ok(status_code: int = 200, **fields: Any) -> JSON:
    """``{"success": true, **fields}``."""
    return JSON({"success": True, **fields}, status_code=status_code)


def listing(items: list[Any] | JSONArray) -> JSON:
    """``{"success": true, "data": [...], "total": N}``; ``data`` may come encoded already."""
    if isinstance(items, JSONArray):
        return JSON(b'{"success":true,"data":%s,"total":%d}' % (items.json.encode(), items.total))
    return JSON({"success": True, "data": items, "total": len(items)})


def item(data: Any, status_code: int = 200) -> JSON:
    """``{"success": true, "data": {...}}``."""
    return JSON({"success": True, "data": data}, status_code=status_code)


def error(
    status_code: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSON:
    body: dict[str, Any] = {"success": False, "error": message}
    if details:
        body["details"] = details
    return JSON(body, status_code=status_code, headers=headers)
