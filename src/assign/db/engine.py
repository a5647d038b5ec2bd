"""The database handle: engine, transactions, and the few PostgreSQL/SQLite differences.

Writes go through :meth:`Database.run`. On SQLite they run whole on one writer thread
(:mod:`assign.db.sqlite_writer`), with ``BEGIN IMMEDIATE``, so they never fail on a lock
upgrade; other processes wait on ``busy_timeout``. On PostgreSQL a transaction that loses a
deadlock is run again.

PostgreSQL may be reached through a pooler in transaction mode (see :mod:`assign.db.connect`);
what needs a session of its own (the dispatcher's lock, LISTEN) asks :meth:`Database.
session_engine`, which answers the direct database (``ASSIGN_DIRECT_DATABASE_URL``) or None.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from assign.db import connect, dialect
from assign.db.sqlite_writer import Writer, prepare

log = logging.getLogger(__name__)
T = TypeVar("T")

#: SQLSTATEs that mean "run the transaction again": deadlock, serialization failure.
RETRYABLE_SQLSTATES = {"40P01", "40001"}


#: the transaction open in the current task, as (database, connection)
_current: contextvars.ContextVar[tuple[Database, AsyncConnection] | None] = contextvars.ContextVar(
    "assign_transaction", default=None
)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached (answered as 503)."""


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    # the driver used directly (COPY) raises its own errors, with their SQLSTATE
    for candidate in (orig, getattr(orig, "__cause__", None), exc):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` says the database is gone rather than that a statement was wrong."""
    if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError, DatabaseUnavailable)):
        return True
    if isinstance(exc, PoolTimeout):  # no pooled connection came free within pool_timeout
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = _sqlstate(exc) or ""
        driver_error: BaseException | None = exc.orig
    elif type(exc).__module__.startswith("asyncpg"):
        # the driver used directly (COPY) raises its own errors, not translated by SQLAlchemy
        state = str(getattr(exc, "sqlstate", None) or "")
        driver_error = exc
    else:
        return False
    if state.startswith("08") or state in {"57P01", "57P02", "57P03", "53300"}:
        return True
    text = str(driver_error).lower() if driver_error is not None else ""
    return any(
        needle in text
        for needle in (
            "connection",
            "closed",
            "terminat",
            "could not connect",
            "unable to open",
            # asyncpg, when the connection died in the middle of an operation
            "another operation",
        )
    )


async def _retried(exc: BaseException, attempt: int, attempts: int) -> bool:
    """Whether ``exc`` ends an attempt worth making again (a deadlock or a serialization
    failure, before the last attempt); if so, logged and after a short random back-off."""
    if attempt < attempts and _sqlstate(exc) in RETRYABLE_SQLSTATES:
        log.info("transaction retried", extra={"sqlstate": _sqlstate(exc)})
        await asyncio.sleep(random.uniform(0.5, 1.0) * 0.01 * 2**attempt)
        return True
    return False


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        session_url: str | None = None,
    ) -> None:
        self.url = url
        self.is_sqlite = dialect.is_sqlite_url(url)
        #: whether ``url`` is a pooler in transaction mode: None until the first connection
        self.pooled: bool | None = False if self.is_sqlite else None
        self.session_url = session_url if session_url and session_url != url else None
        self._session_engine: AsyncEngine | None = None
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if ":memory:" in url or url.endswith("://"):
                raise ValueError("an in-memory SQLite database cannot be shared; use a file")
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # Every connection made is kept (twice ``pool_size``, no overflow): an overflow
            # connection is closed when it is returned to a full pool, so under a steady load
            # of many short transactions the pool would open and close a PostgreSQL backend
            # every few of them (the backend's start-up and each statement's preparation again).
            kwargs.update(
                pool_size=2 * pool_size,
                max_overflow=0,
                pool_pre_ping=False,
                pool_timeout=5,
                pool_recycle=1800,
                async_creator=self._connect,
            )
            self._connect_kwargs = connect.connect_kwargs(url)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._writer: Writer | None = None
        if self.is_sqlite:
            self._writer = Writer(url, timeout=30, joined=_current, owner=self)
            self._install_sqlite_hooks()
        else:
            event.listen(self.engine.sync_engine, "connect", self._on_pg_connect, insert=True)

    async def _connect(self) -> Any:
        """A new asyncpg connection, made as what ``url`` is (found out on the first one)."""
        if self.pooled is None:
            pooled = await connect.probe(self._connect_kwargs)
            if self.pooled is None:
                self.pooled = pooled
                if pooled:
                    log.info("database reached through a pooler: no session state kept on it")
        return await asyncpg.connect(
            **self._connect_kwargs, **connect.session_options(pooled=bool(self.pooled))
        )

    def _on_pg_connect(self, dbapi_conn: Any, _record: Any) -> None:
        if self.pooled:
            connect.forget_statements(dbapi_conn)

    async def session_engine(self) -> AsyncEngine | None:
        """An engine whose connections are database sessions of their own (for a session
        lock, LISTEN): the direct URL's when set, else this one's unless it is a pooler;
        None then, and on SQLite."""
        if self.is_sqlite:
            return None
        if self.session_url is not None:
            if self._session_engine is None:
                self._session_engine = create_async_engine(
                    self.session_url,
                    poolclass=NullPool,
                    connect_args=connect.session_options(pooled=False),
                )
            return self._session_engine
        if self.pooled is None:
            try:
                async with self.engine.connect():
                    pass  # the first connection finds out what the URL is
            except Exception as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailable(str(exc)) from exc
                raise
        return None if self.pooled else self.engine

    @property
    def shared_by_processes(self) -> bool:
        """Whether several processes may use the database (PostgreSQL), so wake-ups cross them."""
        return not self.is_sqlite

    @property
    def combines_writes(self) -> bool:
        """Whether one statement may read, lock and write several tables, run alone (writable
        CTEs, PostgreSQL): the one-statement claims, results and request starts."""
        return not self.is_sqlite

    @property
    def keeps_planner_statistics(self) -> bool:
        """Whether the leader refreshes the planner's statistics of busy tables itself
        (``ANALYZE`` on PostgreSQL; SQLite plans without them)."""
        return not self.is_sqlite

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def _install_sqlite_hooks(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            prepare(dbapi_conn)

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = "BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN"
            conn.exec_driver_sql(mode)

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reads.

        On PostgreSQL each statement runs on its own (autocommit: no ``BEGIN`` and ``ROLLBACK``
        round trips around a one-query read) and sees what is committed when it starts; with
        ``snapshot`` the statements share one snapshot (a read-only repeatable-read
        transaction). On SQLite the connection holds one read transaction either way.
        """
        try:
            async with self.engine.connect() as conn:
                if not self.is_sqlite and (snapshot or not self.pooled):
                    # through a pooler, each statement runs in a transaction (see db.connect)
                    conn = await conn.execution_options(
                        isolation_level="REPEATABLE READ" if snapshot else "AUTOCOMMIT",
                        postgresql_readonly=snapshot,
                    )
                yield conn
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if self._writer is not None:
            # the writer thread waits meanwhile (one such block at a time: it waits for each)
            async with self._writer.held(), self.engine.connect() as conn:
                conn = await conn.execution_options(immediate=True)
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (no automatic retry; see :meth:`run`).

        Inside another transaction of this database in the same task, it joins that one, so a
        use case can be made part of a larger unit (e.g. an idempotent request) unchanged.
        """
        outer = _current.get()
        if outer is not None and outer[0] is self:
            yield outer[1]
            return
        try:
            async with self._begin() as conn:
                token = _current.set((self, conn))
                try:
                    yield conn
                finally:
                    _current.reset(token)
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = 5) -> T:
        """Run ``work`` in a transaction, again (after a pause with jitter) when PostgreSQL
        reports a deadlock or a serialization failure. Every write transaction goes through
        here, so a caller never sees either."""
        outer = _current.get()
        if outer is not None and outer[0] is self:
            return await work(outer[1])  # the outer transaction is the one to run again
        for attempt in range(1, attempts + 1):
            try:
                return await self._run_once(work)
            except Exception as exc:
                if await _retried(exc, attempt, attempts):
                    continue
                raise
        raise AssertionError("unreachable")

    async def _run_once(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        if self._writer is None:
            async with self.transaction() as conn:
                return await work(conn)
        try:
            # SQLite: the whole transaction on the writer thread (see db.sqlite_writer)
            return await self._writer.run(work)
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    def in_transaction(self) -> bool:
        """Whether the current task has a transaction of this database open (which
        :meth:`run` and :meth:`transaction` join)."""
        outer = _current.get()
        return outer is not None and outer[0] is self

    async def run_alone(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = 5
    ) -> T:
        """:meth:`run` for ``work`` that sends one statement: on PostgreSQL reached directly it
        runs as its own transaction (autocommit), so no ``BEGIN`` and ``COMMIT`` round trips
        wrap it and the rows it locks are released as soon as PostgreSQL has committed it, not
        a client round trip later (rows every writer of a server or a request updates, like
        ``active_tasks``, are held that much shorter). Through a pooler, on SQLite and inside
        another transaction, exactly :meth:`run`. Run again on a deadlock or a serialization
        failure, as :meth:`run`."""
        if self.is_sqlite or self.pooled is not False or self.in_transaction():
            return await self.run(work, attempts=attempts)
        for attempt in range(1, attempts + 1):
            try:
                async with self.engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    return await work(conn)
            except Exception as exc:
                if is_connection_error(exc):
                    raise DatabaseUnavailable(str(exc)) from exc
                if await _retried(exc, attempt, attempts):
                    continue
                raise
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError) as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def on_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop: at once, or, called by work that runs on
        SQLite's writer thread, once its transaction has committed."""
        if self._writer is None:
            callback()
        else:
            self._writer.on_loop(callback)

    async def dispose(self) -> None:
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
        await self.engine.dispose()
        if self._session_engine is not None:
            await self._session_engine.dispose()
