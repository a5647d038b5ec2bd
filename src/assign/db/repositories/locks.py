"""Row locks taken in the project's one order: links, then servers, then requests; the rows of one
table in id order (docs/guarantees.md, "Lock order"). SQLite has a single writer and needs none:
there the same functions only read."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


async def lock_ids(
    conn: AsyncConnection,
    table: sa.Table,
    ids: Iterable[uuid.UUID | None],
    *,
    key_share: bool = False,
    where: Any = None,
) -> set[uuid.UUID]:
    """The ids among ``ids`` whose rows of ``table`` exist (and match ``where``), locked in id
    order, ``FOR UPDATE`` or ``FOR KEY SHARE``. A row changed by a transaction this one waited
    for is judged as that one left it (a deleted row is left out).

    ``FOR KEY SHARE`` waits only for a transaction holding the row ``FOR UPDATE`` (a deletion
    of a server, a close of a request) and never for the counters' updates (a result's
    ``active_tasks`` and ``created_links``), so placing links does not slow the results down."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return set()
    found: set[uuid.UUID] = set()
    for start in range(0, len(wanted), 5000):
        query = sa.select(table.c.id).where(table.c.id.in_(wanted[start : start + 5000]))
        if where is not None:
            query = query.where(where)
        query = query.order_by(table.c.id)
        query = query.with_for_update(read=key_share, key_share=key_share)
        found.update(r.id for r in await conn.execute(query))
    return found


async def lock_where(
    conn: AsyncConnection, table: sa.Table, condition: Any, *, columns: Iterable[str] = ()
) -> list[Any]:
    """Rows of ``table`` matching ``condition`` (id and ``columns``), locked ``FOR UPDATE`` in id
    order."""
    query = (
        sa.select(table.c.id, *(table.c[name] for name in columns))
        .where(condition)
        .order_by(table.c.id)
    )
    query = query.with_for_update()
    return list((await conn.execute(query)).all())
