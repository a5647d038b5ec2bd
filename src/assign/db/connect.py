"""How Assign opens PostgreSQL connections: to the database itself, or through a pooler.

``ASSIGN_DATABASE_URL`` may point at PgBouncer in transaction pooling mode, where consecutive
transactions of one client connection run on different server sessions. Through such a pooler
Assign must

* send no startup parameter the pooler refuses: PgBouncer (whose configuration says nothing for
  Assign, no ``ignore_startup_parameters``) accepts ``application_name`` among a few others and
  refuses ``jit``, so ``jit=off`` is a startup parameter only on direct connections;
* keep no state in a session: no prepared statement lives beyond the transaction that made it
  (asyncpg's statement cache off, SQLAlchemy's too, and SQLAlchemy's statements unnamed, so each
  is replaced by the next in its session instead of piling up on PgBouncer's server
  connections as uniquely named ones would), and every statement runs in a transaction (a
  statement prepared in one implicit transaction may be executed on another server session);
* take no session lock and LISTEN on nothing (see :class:`assign.db.engine.Database`).

Which one a URL is, is found out on the first connection, with nothing set by the operator: a
pooler answers the startup with a cancel key of its own, so the backend process id it reports
differs from ``pg_backend_pid()``, while PostgreSQL reports its own.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

APPLICATION_NAME = "assign"
#: asyncpg arguments of every connection (seconds)
TIMEOUTS = {"timeout": 5, "command_timeout": 60}


def connect_kwargs(url: str) -> dict[str, Any]:
    """asyncpg's ``connect()`` arguments for a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    _, kwargs = dialect().create_connect_args(make_url(url))
    return dict(kwargs)


def session_options(*, pooled: bool) -> dict[str, Any]:
    """asyncpg options: through a pooler nothing outlives a transaction; direct, the plans
    of the hot statements are cached and JIT stays off (its compile time costs more than it
    saves on Assign's short statements)."""
    if pooled:
        return {**TIMEOUTS, "statement_cache_size": 0,
                "server_settings": {"application_name": APPLICATION_NAME}}  # fmt: skip
    return {**TIMEOUTS, "server_settings": {"jit": "off", "application_name": APPLICATION_NAME}}


#: SQLAlchemy's connect_args for a URL that may be a pooler: no statement kept, none named
POOLER_SAFE_ARGS: dict[str, Any] = {
    **session_options(pooled=True),
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": lambda: "",
}


def forget_statements(adapted: Any) -> None:
    """Make SQLAlchemy's asyncpg adapter of one connection keep no prepared statement and name
    none (what ``POOLER_SAFE_ARGS`` sets, for a connection made by an ``async_creator``)."""
    adapted._prepared_statement_cache = None
    adapted._prepared_statement_name_func = lambda: ""


async def is_pooler(conn: asyncpg.Connection) -> bool:
    """Whether ``conn`` goes through a pooler (see the module's docstring)."""
    async with conn.transaction():
        backend = await conn.fetchval("SELECT pg_backend_pid()")
    return int(backend) != conn.get_server_pid()


async def probe(kwargs: dict[str, Any]) -> bool:
    """Connect once without anything a pooler refuses; whether it is a pooler."""
    conn = await asyncpg.connect(**kwargs, **session_options(pooled=True))
    try:
        return await is_pooler(conn)
    finally:
        await conn.close()
