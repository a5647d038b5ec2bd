"""Console sessions: an admin key signs in, a random id (only its digest stored) is the cookie.

The key is checked as the admin API checks it (``ASSIGN_ADMIN_KEY`` or a stored admin key) and
is never kept: the session row holds the key's digest, whether it is read-only, and the
session's CSRF token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import catalog as catalog_repo
from assign.db.repositories import sessions as repo
from assign.security import keys
from assign.services.context import Context


@dataclass(frozen=True)
class Session:
    id_hash: str
    read_only: bool
    csrf_token: str
    flash: str | None


async def sign_in(ctx: Context, *, key: str) -> str | None:
    """A new session's cookie value for a valid admin key, or None for any other key."""
    now = ctx.clock.now()
    digest = keys.hash_key(key)
    token = secrets.token_urlsafe(32)

    async def work(conn: AsyncConnection) -> bool:
        admin_key = ctx.settings.admin_key
        if admin_key and keys.same_key(key, keys.hash_key(admin_key)):
            read_only: bool | None = False
        else:
            read_only = await catalog_repo.admin_key_read_only(conn, digest)
        if read_only is None:
            return False
        await repo.delete_expired(conn, now)
        await repo.insert(
            conn,
            {
                "id_hash": keys.hash_key(token),
                "key_hash": digest,
                "read_only": read_only,
                "csrf_token": secrets.token_urlsafe(32),
                "flash": None,
                "created_at": now,
                "expires_at": now + timedelta(hours=ctx.settings.ui_session_hours),
            },
        )
        return True

    return token if await ctx.db.run(work) else None


async def find(ctx: Context, *, token: str) -> Session | None:
    """The live session of a cookie value, or None (unknown, signed out or expired)."""
    async with ctx.db.read() as conn:
        row = await repo.get_live(conn, keys.hash_key(token), ctx.clock.now())
    if row is None:
        return None
    return Session(row.id_hash, bool(row.read_only), row.csrf_token, row.flash)


async def sign_out(ctx: Context, *, id_hash: str) -> None:
    """End the session on the server: its cookie no longer works."""
    await ctx.db.run(lambda conn: repo.delete(conn, id_hash))


async def set_flash(ctx: Context, *, id_hash: str, flash: str | None) -> None:
    """The notice the session's next page shows once (None clears it)."""
    await ctx.db.run(lambda conn: repo.set_flash(conn, id_hash, flash))
