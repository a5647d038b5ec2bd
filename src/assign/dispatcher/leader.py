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

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from assign.db.repositories import leadership
from assign.services.context import Context

log = logging.getLogger("assign.dispatcher")
T = TypeVar("T")

LOCK_KEY = leadership.LOCK_KEY


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
                # the lock session ends by itself after the lease without a word from us
                if not await leadership.try_lock(self._conn, lease_seconds=self.lease_seconds):
                    await self._drop(held=False)
                    return False
                return True  # the loop logs the change (dispatcher.events)
            await leadership.ping(self._conn)  # still connected, so still the holder
            return True
        except Exception as exc:
            log.warning(
                "dispatcher lost its lock connection", extra={"error_type": type(exc).__name__}
            )
            await self._drop()
            return False

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
                        await leadership.ping(self._conn)
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
        """Take or renew the lease row (see ``leadership.renew_lease``)."""
        expires = now + timedelta(seconds=self.lease_seconds)
        return await self.ctx.db.run_alone(
            lambda conn: leadership.renew_lease(
                conn, holder=self.holder, expires_at=expires, now=now
            )
        )

    async def record_tick(self, now: datetime) -> None:
        """Write who leads and when it last ticked (the console's Overview shows it)."""
        await self.ctx.db.run_alone(
            lambda conn: leadership.record_tick(conn, holder=self.holder, now=now)
        )

    async def release(self) -> None:
        if self.uses_lease:
            try:
                await self.ctx.db.run_alone(
                    lambda conn: leadership.release_lease(conn, holder=self.holder)
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
