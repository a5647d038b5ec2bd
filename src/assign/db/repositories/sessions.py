"""SQL for console sessions (``ui_sessions``): created at sign-in, looked up per page, deleted
at sign-out or once expired."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import ui_sessions
from assign.db.views import AnyRow


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Store a new session."""
    await conn.execute(ui_sessions.insert().values(**values))


async def get_live(conn: AsyncConnection, id_hash: str, now: datetime) -> AnyRow | None:
    """The session with this id digest that has not expired, or None."""
    query = sa.select(ui_sessions).where(
        ui_sessions.c.id_hash == id_hash, ui_sessions.c.expires_at > now
    )
    return (await conn.execute(query)).first()


async def delete(conn: AsyncConnection, id_hash: str) -> None:
    """Forget one session."""
    await conn.execute(ui_sessions.delete().where(ui_sessions.c.id_hash == id_hash))


async def delete_of_key(conn: AsyncConnection, key_hash: str) -> None:
    """Forget every session an admin key started (the key was revoked)."""
    await conn.execute(ui_sessions.delete().where(ui_sessions.c.key_hash == key_hash))


async def delete_expired(conn: AsyncConnection, now: datetime) -> None:
    """Forget every expired session."""
    await conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at <= now))


async def set_flash(conn: AsyncConnection, id_hash: str, flash: str | None) -> None:
    """Set (or clear, with None) the notice the session's next page shows."""
    await conn.execute(
        ui_sessions.update().where(ui_sessions.c.id_hash == id_hash).values(flash=flash)
    )
