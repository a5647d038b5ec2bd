"""SQL of the re-encryption of stored secrets: keyset-paged reads, compare-and-set writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


async def read_batch(
    conn: AsyncConnection,
    *,
    keys: Sequence[sa.Column[Any]],
    column: sa.Column[Any],
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` rows (``keys``..., ``column``) with a value in ``column``, in key order
    after the key ``after``."""
    query = sa.select(*keys, column).where(column.is_not(None)).order_by(*keys).limit(limit)
    if after is not None:
        query = query.where(sa.tuple_(*keys) > sa.tuple_(*after))
    return list((await conn.execute(query)).all())


async def replace_values(
    conn: AsyncConnection,
    *,
    table: sa.Table,
    keys: Sequence[sa.Column[Any]],
    column: sa.Column[Any],
    changes: list[dict[str, Any]],
) -> None:
    """Each change (``k0``... the key, ``old``, ``new``) written where ``column`` still holds
    ``old``."""
    condition = sa.and_(*(k == sa.bindparam(f"k{i}") for i, k in enumerate(keys)))
    statement = (
        table.update()
        .where(condition, column == sa.bindparam("old"))
        .values({column.name: sa.bindparam("new")})
    )
    await conn.execute(statement, changes)
