"""Leadership: among several dispatchers on one database, exactly one acts at a time.

PostgreSQL: a session advisory lock held on a dedicated connection. When the leader dies (even
``kill -9``) its connection closes, the lock is released at once, and the next dispatcher to try
takes over on its following tick. The lock session also carries the lease: PostgreSQL ends it
after ``lease_seconds`` without a word from the leader (``idle_session_timeout``), so a leader
that hangs, or whose host vanishes without closing its connection, loses the lock after the
lease; a live leader speaks on it every tick, and every third of the lease during a long tick.
SQLite, and PostgreSQL reached only through a pooler in transaction mode (no session of its
own to hold a lock in; see assign.db.connect): a lease row, taken and renewed in one statement
every tick (and every third of the lease during a long tick), free for another dispatcher once
``lease_seconds`` have passed without a renewal, or at once when the leader stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from assign.db.tables import dispatcher_lease, dispatcher_ticks
from assign.services.context import Context

log = logging.getLogger("assign.dispatcher")
T = TypeVar("T")

LOCK_KEY = 0x61737369676E  # "assign"
LEASE_NAME = "dispatcher"


class Leadership:
    def __init__(self, ctx: Context, *, lease_seconds: float) -> None:
        self.ctx = ctx
        self.lease_seconds = lease_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._conn: AsyncConnection | None = None
        self._listening = False
        #: the engine of session connections (the lock), or None for the lease row; unset at first
        self._lock_engine: AsyncEngine | None = None
        self._mode: str | None = None
        self._leading = False

    @property
    def uses_lease(self) -> bool:
        return self._mode == "lease"

    async def acquire(self, now: datetime) -> bool:
        """True when this process is the leader for the coming tick."""
        if self._mode is None:
            self._lock_engine = await self.ctx.db.session_engine()
            self._mode = "lease" if self._lock_engine is None else "lock"
        if self._lock_engine is None:
            leading = await self._renew_lease(now)
            self._leading = leading  # the loop logs the change (dispatcher.events)
            return leading
        return await self._hold_lock(self._lock_engine)

    async def _hold_lock(self, engine: AsyncEngine) -> bool:
        try:
            if self._conn is None:
                self._conn = await engine.connect()
                await self._conn.execution_options(isolation_level="AUTOCOMMIT")
                got = (
                    await self._conn.execute(
                        sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}
                    )
                ).scalar_one()
                if not got:
                    await self._drop(held=False)
                    return False
                await self._expire_when_idle(self._conn)
                return True  # the loop logs the change (dispatcher.events)
            await self._conn.execute(sa.text("SELECT 1"))  # still connected, so still the holder
            return True
        except Exception as exc:
            log.warning(
                "dispatcher lost its lock connection", extra={"error_type": type(exc).__name__}
            )
            await self._drop()
            return False

    async def _expire_when_idle(self, conn: AsyncConnection) -> None:
        """Have PostgreSQL (14+) end the lock session after the lease without a word from us."""
        version = conn.dialect.server_version_info or (0,)
        if version >= (14,):
            ms = max(1000, int(self.lease_seconds * 1000))
            await conn.execute(sa.text(f"SET idle_session_timeout = {ms}"))

    async def keep_during(self, work: Awaitable[T]) -> T:
        """Await ``work`` (a tick), speaking on the lock session every third of the lease
        meanwhile, so a long tick is not taken for a hung leader."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.lease_seconds / 3)
                if done:
                    return task.result()
                if self._conn is not None:
                    try:
                        await self._conn.execute(sa.text("SELECT 1"))
                    except Exception as exc:  # the next acquire() lets go of it
                        log.warning(
                            "dispatcher lost its lock connection during a tick",
                            extra={"error_type": type(exc).__name__},
                        )
                elif self.uses_lease:
                    with contextlib.suppress(Exception):  # the next acquire() tells
                        await self._renew_lease(self.ctx.clock.now())
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def raw_connection(self) -> Any | None:
        """The asyncpg connection holding the lock (for LISTEN), when leader on PostgreSQL."""
        if self._conn is None:
            return None
        raw = await self._conn.get_raw_connection()
        return raw.driver_connection

    async def _renew_lease(self, now: datetime) -> bool:
        """Take or renew the lease row in one statement: it is ours when it was, when it had
        expired, or when there was none; two dispatchers at once cannot both get it."""
        expires = now + timedelta(seconds=self.lease_seconds)
        insert: Any = sqlite_insert if self.ctx.db.is_sqlite else pg_insert
        statement = insert(dispatcher_lease).values(
            name=LEASE_NAME, holder=self.holder, expires_at=expires
        )
        upsert = statement.on_conflict_do_update(
            index_elements=[dispatcher_lease.c.name],
            set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
            where=sa.or_(
                dispatcher_lease.c.holder == self.holder, dispatcher_lease.c.expires_at <= now
            ),
        ).returning(dispatcher_lease.c.holder)
        async with self.ctx.db.transaction() as conn:
            return (await conn.execute(upsert)).first() is not None

    async def record_tick(self, now: datetime) -> None:
        """Write who leads and when it last ticked (the console's Overview shows it)."""
        async with self.ctx.db.transaction() as conn:
            done = await conn.execute(
                dispatcher_ticks.update()
                .where(dispatcher_ticks.c.name == LEASE_NAME)
                .values(holder=self.holder, ticked_at=now)
            )
            if done.rowcount == 0:
                await conn.execute(
                    dispatcher_ticks.insert().values(
                        name=LEASE_NAME, holder=self.holder, ticked_at=now
                    )
                )

    async def release(self) -> None:
        if self.uses_lease:
            try:
                async with self.ctx.db.transaction() as conn:
                    await conn.execute(
                        dispatcher_lease.delete().where(
                            dispatcher_lease.c.name == LEASE_NAME,
                            dispatcher_lease.c.holder == self.holder,
                        )
                    )
            except Exception:
                log.warning("could not release the dispatcher lease")
        await self._drop()

    async def _drop(self, *, held: bool = True) -> None:
        """Let go of the lock connection. One that holds (or may hold) the lock is closed for
        good: back in the pool its session, and with it the lock, would live on, so nobody else
        could lead. One that never got the lock goes back to the pool."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if held:
                await conn.invalidate()
            await conn.close()
        except Exception:
            try:
                await conn.invalidate()
            except Exception:
                log.warning("could not close the dispatcher lock connection")
