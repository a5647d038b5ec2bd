"""SQL of the dispatcher's leadership: the session lock, the lease row, the last tick."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.db.tables import dispatcher_lease, dispatcher_ticks

LOCK_KEY = 0x61737369676E  # "assign"
LEASE_NAME = "dispatcher"


async def try_lock(conn: AsyncConnection, *, lease_seconds: float) -> bool:
    """Whether this session took the leadership lock; the session then ends by itself after
    ``lease_seconds`` without a statement (PostgreSQL 14+)."""
    if not await dialect.try_advisory_lock(conn, LOCK_KEY):
        return False
    await dialect.end_idle_session(conn, lease_seconds)
    return True


async def ping(conn: AsyncConnection) -> None:
    """One round trip on the lock session: still connected, so still the holder."""
    await dialect.ping(conn)


async def renew_lease(
    conn: AsyncConnection, *, holder: str, expires_at: datetime, now: datetime
) -> bool:
    """Whether ``holder`` has the lease row until ``expires_at``: it is ours when it was, when it
    had expired, or when there was none (one statement; two holders cannot both get it)."""
    statement = dialect.insert(conn, dispatcher_lease).values(
        name=LEASE_NAME, holder=holder, expires_at=expires_at
    )
    upsert = statement.on_conflict_do_update(
        index_elements=[dispatcher_lease.c.name],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=sa.or_(dispatcher_lease.c.holder == holder, dispatcher_lease.c.expires_at <= now),
    ).returning(dispatcher_lease.c.holder)
    return (await conn.execute(upsert)).first() is not None


async def record_tick(conn: AsyncConnection, *, holder: str, now: datetime) -> None:
    """The row of who leads and when it last ticked, written in one statement (an upsert: two
    dispatchers writing the first row at once, a leader that lost its lock and its successor,
    must not collide)."""
    statement = dialect.insert(conn, dispatcher_ticks).values(
        name=LEASE_NAME, holder=holder, ticked_at=now
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[dispatcher_ticks.c.name],
            set_={"holder": statement.excluded.holder, "ticked_at": statement.excluded.ticked_at},
        )
    )


async def release_lease(conn: AsyncConnection, *, holder: str) -> None:
    """The lease row deleted if ``holder`` has it."""
    await conn.execute(
        dispatcher_lease.delete().where(
            dispatcher_lease.c.name == LEASE_NAME, dispatcher_lease.c.holder == holder
        )
    )
