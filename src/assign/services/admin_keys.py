"""Use cases of admin keys an operator runs by hand: list them, revoke one."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import admin_keys as repo
from assign.db.repositories import sessions as sessions_repo
from assign.errors import NotFound
from assign.services.context import Context


async def list_admin_keys(ctx: Context) -> list[dict[str, Any]]:
    """Each key's id, name and creation time (never the key or its digest)."""
    async with ctx.db.read() as conn:
        rows = await repo.list_keys(conn)
    return [dict(r._mapping) for r in rows]


async def revoke_admin_key(ctx: Context, *, key_id: uuid.UUID) -> None:
    """Delete the key: refused at once by this process, within ``ASSIGN_KEY_CACHE_SECONDS``
    by the others (see services.keys); the console sessions it started end with it."""

    async def work(conn: AsyncConnection) -> None:
        digest = await repo.delete_key(conn, key_id)
        if digest is None:
            raise NotFound("Admin key not found")
        await sessions_repo.delete_of_key(conn, digest)

    await ctx.db.run(work)
    ctx.known_keys.clear()
