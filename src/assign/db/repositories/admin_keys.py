"""SQL for listing and revoking admin keys (their digests never leave this module)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import admin_keys


async def list_keys(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Every admin key, oldest first, without its digest."""
    shown = [c for c in admin_keys.c if c.name != "key_hash"]
    return (await conn.execute(sa.select(*shown).order_by(admin_keys.c.created_at))).all()


async def delete_key(conn: AsyncConnection, key_id: uuid.UUID) -> str | None:
    """The digest of the admin key with this id (it is gone now), or None when there was none."""
    query = admin_keys.delete().where(admin_keys.c.id == key_id).returning(admin_keys.c.key_hash)
    return (await conn.execute(query)).scalar_one_or_none()
