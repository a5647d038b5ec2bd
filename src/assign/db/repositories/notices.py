"""Notifications to other processes sharing the database (PostgreSQL ``NOTIFY``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect


async def notify(conn: AsyncConnection, channel: str, payload: str | None = None) -> bool:
    """Send ``channel`` (with ``payload``) when the transaction commits; False where the
    database has no notifications (SQLite: one process)."""
    if not dialect.notifies(conn):
        return False
    await dialect.notify(conn, channel, payload)
    return True
