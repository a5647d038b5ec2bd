"""SQL of idempotency keys: claim a key for one request, store its answer, read it back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.db.tables import idempotency_keys as keys


async def claim(
    conn: AsyncConnection,
    *,
    principal: str,
    key: str,
    route: str,
    fingerprint: str,
    now: datetime,
    expired_before: datetime,
) -> bool:
    """True when this transaction now owns the key; False when another request holds it.

    On PostgreSQL, a concurrent owner's insert is waited for: False means it committed.
    """
    await conn.execute(
        keys.delete().where(
            keys.c.principal == principal, keys.c.key == key, keys.c.created_at < expired_before
        )
    )
    result = await conn.execute(
        dialect.insert(conn, keys)
        .values(principal=principal, key=key, route=route, body_hash=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=["principal", "key"])
        .returning(keys.c.key)
    )
    return result.first() is not None


async def store(
    conn: AsyncConnection, *, principal: str, key: str, status_code: int, response: bytes
) -> None:
    await conn.execute(
        keys.update()
        .where(keys.c.principal == principal, keys.c.key == key)
        .values(status_code=status_code, response=response)
    )


async def get(conn: AsyncConnection, *, principal: str, key: str) -> Row[Any] | None:
    """The stored key with its route, body fingerprint and answer, or None."""
    return (
        await conn.execute(sa.select(keys).where(keys.c.principal == principal, keys.c.key == key))
    ).first()
