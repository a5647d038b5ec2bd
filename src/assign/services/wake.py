"""Prompt wake-up: new pending links or freed slots wake the dispatcher before its interval.

In one process an asyncio event does it; across processes on PostgreSQL, ``NOTIFY`` (delivered
when the writing transaction commits) reaches the leader, which LISTENs on its lock connection.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.services.context import Context

WAKE_CHANNEL = "assign_wake"


async def notify(ctx: Context, conn: AsyncConnection) -> None:
    """Call inside the writing transaction: wakes dispatchers here and in other processes."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text(f"NOTIFY {WAKE_CHANNEL}"))
    ctx.wake.set()
