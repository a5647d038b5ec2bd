"""SQL of a request's export: its links, hot or archived, page by page in key order."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import views


async def links_page(
    conn: AsyncConnection,
    table: sa.Table,
    *,
    request_id: uuid.UUID,
    after: tuple[Any, Any] | None,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` of the request's links of ``table`` (the API's fields) after the
    (created_at, id) key ``after``, in that order."""
    columns = [table.c[name] for name in views.LINK_FIELDS]
    query = sa.select(*columns).where(table.c.request_id == request_id)
    if after is not None:
        query = query.where(sa.tuple_(table.c.created_at, table.c.id) > sa.tuple_(*after))
    query = query.order_by(table.c.created_at, table.c.id).limit(limit)
    return list((await conn.execute(query)).all())
