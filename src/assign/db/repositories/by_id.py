"""SQL of one row by its ``id``, the same for every table keyed so."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection


async def update(
    conn: AsyncConnection, table: sa.Table, row_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any] | None:
    """The row of ``table`` after setting ``values``, or None when there is none with this id."""
    query = table.update().where(table.c.id == row_id).values(**values).returning(table)
    return (await conn.execute(query)).first()


async def delete(conn: AsyncConnection, table: sa.Table, row_id: uuid.UUID) -> bool:
    """Whether ``table`` had a row with this id (now deleted)."""
    result = await conn.execute(table.delete().where(table.c.id == row_id))
    return bool(result.rowcount)
