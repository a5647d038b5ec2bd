"""Use cases of admin keys an operator runs by hand: list them, revoke one."""

from __future__ import annotations

import uuid
from typing import Any

from assign.db.repositories import admin_keys as repo
from assign.errors import NotFound
from assign.services.context import Context


async def list_admin_keys(ctx: Context) -> list[dict[str, Any]]:
    """Each key's id, name and creation time (never the key or its digest)."""
    async with ctx.db.read() as conn:
        rows = await repo.list_keys(conn)
    return [dict(r._mapping) for r in rows]


async def revoke_admin_key(ctx: Context, *, key_id: uuid.UUID) -> None:
    """Delete the key: refused at once by this process, within ``ASSIGN_KEY_CACHE_SECONDS``
    by the others (see services.keys)."""
    if not await ctx.db.run(lambda conn: repo.delete_key(conn, key_id)):
        raise NotFound("Admin key not found")
    ctx.known_keys.clear()
