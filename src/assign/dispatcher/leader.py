"""Leadership: among several dispatchers on one database, exactly one acts at a time.

PostgreSQL: a session advisory lock held on a dedicated connection. When the leader dies (even
``kill -9``) its connection closes, the lock is released at once, and the next dispatcher to try
takes over on its following tick. The lock session also carries the lease: PostgreSQL ends it
after ``lease_seconds`` without a word from the leader (``idle_session_timeout``), so a leader
that hangs, or whose host vanishes without closing its connection, loses the lock after the
lease; a live leader speaks on it every tick, and every third of the lease during a long tick.
SQLite: a lease row renewed every tick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import dispatcher_lease
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

    async def acquire(self, now: datetime) -> bool:
        """True when this process is the leader for the coming tick."""
        if self.ctx.db.is_sqlite:
            return await self._renew_lease(now)
        return await self._hold_lock()

    async def _hold_lock(self) -> bool:
        try:
            if self._conn is None:
                self._conn = await self.ctx.db.engine.connect()
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
        expires = now + timedelta(seconds=self.lease_seconds)
        async with self.ctx.db.transaction() as conn:
            row = (
                await conn.execute(
                    sa.select(dispatcher_lease).where(dispatcher_lease.c.name == LEASE_NAME)
                )
            ).first()
            if row is None:
                await conn.execute(
                    dispatcher_lease.insert().values(
                        name=LEASE_NAME, holder=self.holder, expires_at=expires
                    )
                )
                return True
            if row.holder != self.holder and row.expires_at > now:
                return False
            await conn.execute(
                dispatcher_lease.update()
                .where(dispatcher_lease.c.name == LEASE_NAME)
                .values(holder=self.holder, expires_at=expires)
            )
            return True

    async def release(self) -> None:
        if self.ctx.db.is_sqlite:
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
