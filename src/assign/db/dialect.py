"""Every difference between PostgreSQL and SQLite, each behind one named function.

The rest of the package asks what the database can do (lock rows, take arrays, encode JSON,
notify other processes) and never which database it is. SQLite runs in one process with a
single writer (``BEGIN IMMEDIATE``): it needs no row locks and no cross-process wake-ups, and
takes a bulk change as an executemany. PostgreSQL is shared by many processes: row locks
(``FOR UPDATE``, ``SKIP LOCKED``; SQLAlchemy renders them as nothing on SQLite, so queries
carry them unconditionally), array-driven bulk statements (``unnest``), ``COPY``, ``NOTIFY``,
JSON encoded by the database, and a session advisory lock for the dispatcher's leadership.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

#: longest IN list sent to SQLite (PostgreSQL takes one array parameter instead)
SQLITE_IN_CHUNK = 500


def _postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def bind_name(bind: Any) -> str:
    """The dialect's name of a synchronous connection (a migration's ``op.get_bind()``)."""
    return str(bind.dialect.name)


def is_sqlite_url(url: str) -> bool:
    """Whether a database URL names a SQLite database."""
    return url.startswith("sqlite")


def naive_utc_times(dialect: Dialect) -> bool:
    """Whether timestamps are stored as naive UTC text (SQLite has no time-zone type)."""
    return dialect.name == "sqlite"


def alters_by_batch(dialect: Dialect) -> bool:
    """Whether migrations alter a table by copying it (SQLite's ALTER TABLE is limited)."""
    return dialect.name == "sqlite"


def reflects_expression_indexes(dialect: Dialect) -> bool:
    """Whether an index's expression columns come back as written (not on SQLite)."""
    return dialect.name != "sqlite"


def locks_rows(conn: AsyncConnection) -> bool:
    """Whether row locks exist (PostgreSQL); SQLite's single writer already holds every row."""
    return _postgres(conn)


def bulk_arrays(conn: AsyncConnection) -> bool:
    """Whether a bulk change is one statement over array parameters (PostgreSQL ``unnest``)
    rather than an executemany of one statement per row (SQLite)."""
    return _postgres(conn)


def writable_ctes(conn: AsyncConnection) -> bool:
    """Whether an UPDATE ... RETURNING may sit in a CTE read by the same statement (PostgreSQL)."""
    return _postgres(conn)


def encodes_json(conn: AsyncConnection) -> bool:
    """Whether the database builds a listing's JSON itself (PostgreSQL ``json_agg``)."""
    return _postgres(conn)


def copies(conn: AsyncConnection) -> bool:
    """Whether bulk inserts go through ``COPY`` (PostgreSQL, asyncpg)."""
    return _postgres(conn)


def notifies(conn: AsyncConnection) -> bool:
    """Whether ``NOTIFY`` reaches other processes (PostgreSQL; SQLite is one process)."""
    return _postgres(conn)


def insert(conn: AsyncConnection, table: sa.Table) -> Any:
    """An INSERT of ``table`` with the database's ``ON CONFLICT`` clauses."""
    return postgresql.insert(table) if _postgres(conn) else sqlite.insert(table)


def text_array(values: Sequence[str]) -> Any:
    """One array parameter of text (PostgreSQL), so a statement is the same whatever the length."""
    return sa.bindparam(None, list(values), type_=postgresql.ARRAY(sa.String()))


def chunks(conn: AsyncConnection, values: Sequence[str]) -> list[list[str]]:
    """``values`` in the pieces one statement takes: all at once as an array on PostgreSQL,
    IN lists of a bounded length on SQLite."""
    if _postgres(conn):
        return [list(values)] if values else []
    return [list(values[i : i + SQLITE_IN_CHUNK]) for i in range(0, len(values), SQLITE_IN_CHUNK)]


def is_in(conn: AsyncConnection, column: Any, values: Sequence[str]) -> Any:
    """``column`` is one of ``values`` (an array parameter on PostgreSQL)."""
    return column == sa.any_(text_array(values)) if _postgres(conn) else column.in_(list(values))


def not_in(conn: AsyncConnection, column: Any, values: Sequence[str]) -> Any:
    """``column`` is none of ``values`` (an array parameter on PostgreSQL)."""
    return column != sa.all_(text_array(values)) if _postgres(conn) else column.not_in(list(values))


async def set_local(conn: AsyncConnection, settings: dict[str, str]) -> None:
    """PostgreSQL settings for the rest of this transaction (as ``SET LOCAL``), all in one
    round trip; nothing on SQLite."""
    if _postgres(conn) and settings:
        calls = ", ".join(f"set_config(:k{i}, :v{i}, true)" for i in range(len(settings)))
        values: dict[str, str] = {}
        for i, (name, value) in enumerate(settings.items()):
            values[f"k{i}"], values[f"v{i}"] = name, value
        await conn.execute(sa.text(f"SELECT {calls}"), values)


_CHANGED_SINCE_ANALYZE = sa.text(
    "SELECT s.n_mod_since_analyze, greatest(c.reltuples, 0) FROM pg_stat_user_tables s "
    "JOIN pg_class c ON c.oid = s.relid WHERE s.relid = CAST(:table AS regclass)"
)


async def stale_statistics(
    conn: AsyncConnection, table: str, *, at_least: int, fraction: float
) -> bool:
    """Whether more rows of ``table`` changed since its last ``ANALYZE`` than ``at_least`` plus
    ``fraction`` of the rows it had then (PostgreSQL's planner estimates from those
    statistics; SQLite plans without them: never)."""
    if not _postgres(conn):
        return False
    row = (await conn.execute(_CHANGED_SINCE_ANALYZE, {"table": table})).first()
    return row is not None and row[0] > at_least + fraction * row[1]


async def analyze(conn: AsyncConnection, table: str) -> None:
    """Refresh the planner's statistics of ``table`` (PostgreSQL)."""
    if _postgres(conn):
        await conn.exec_driver_sql(f"ANALYZE {table}")


async def notify(conn: AsyncConnection, channel: str, payload: str | None = None) -> None:
    """Send ``NOTIFY channel`` (with ``payload``) when the transaction commits (PostgreSQL);
    nothing on SQLite."""
    if not _postgres(conn):
        return
    if payload is None:
        await conn.execute(sa.text(f"NOTIFY {channel}"))
    else:
        await conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": channel, "payload": payload},
        )


async def copy_records(
    conn: AsyncConnection, table: str, columns: Sequence[str], records: Iterable[tuple[Any, ...]]
) -> None:
    """``COPY`` the records into ``table`` (PostgreSQL, asyncpg)."""
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table, records=records, columns=list(columns)
    )


async def try_advisory_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the session advisory lock ``key`` if free (PostgreSQL); whether it was taken."""
    row = await conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
    return bool(row.scalar_one())


async def end_idle_session(conn: AsyncConnection, seconds: float) -> None:
    """Have PostgreSQL (14+) end this session after ``seconds`` without a statement."""
    version = conn.dialect.server_version_info or (0,)
    if version >= (14,):
        ms = max(1000, int(seconds * 1000))
        await conn.execute(sa.text(f"SET idle_session_timeout = {ms}"))


async def ping(conn: AsyncConnection) -> None:
    """One round trip on the connection (it is alive, and so is its session)."""
    await conn.execute(sa.text("SELECT 1"))


class _Prepared:
    """A statement compiled once for SQLite's executemany: its SQL, and for each ``?`` the
    bind's name, its value when a row has none, and its type's processor."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.statement = statement
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        #: (name, value when a row has none, processor) of each ``?``
        self.binds = [
            (
                name,
                compiled.binds[name].effective_value,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in names
        ]

    def rows(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """The driver's parameters of each row. A value that is the same object as the one
        before it at that place (a batch's one ``now``) is processed once."""
        binds = self.binds
        last: list[Any] = [_UNSET] * len(binds)
        done: list[Any] = [None] * len(binds)
        out = []
        for values in rows:
            row = []
            for i, (name, fixed, process) in enumerate(binds):
                value = values.get(name, fixed)
                if process is not None:
                    if value is not last[i]:
                        last[i], done[i] = value, process(value)
                    value = done[i]
                row.append(value)
            out.append(tuple(row))
        return out


_UNSET = object()


_prepared: dict[int, _Prepared] = {}


async def execute_many(
    conn: AsyncConnection, statement: Any, rows: Sequence[dict[str, Any]]
) -> None:
    """``conn.execute(statement, rows)``, an executemany of a constant statement. On SQLite
    the statement is compiled once and each row's values go through their types' own bind
    processors straight into the driver's executemany: SQLAlchemy's way builds, checks and
    processes a parameter dictionary per row, a quarter of the writer's Python on the busiest
    statements (a batch of results, a placement)."""
    if _postgres(conn) or not rows:
        await conn.execute(statement, list(rows))
        return
    prepared = _prepared.get(id(statement))
    if prepared is None or prepared.statement is not statement:
        prepared = _prepared[id(statement)] = _Prepared(statement, conn.dialect)
    await conn.exec_driver_sql(prepared.sql, prepared.rows(rows))
