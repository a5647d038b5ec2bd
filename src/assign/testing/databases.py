"""Scratch PostgreSQL databases: made from a maintenance database, migrated or cloned from a
template, dropped afterwards.

Every function takes the URL of a maintenance database (``postgresql://`` or
``postgresql+asyncpg://``) that the caller may create databases from, and answers URLs of the
same form. ``CREATE DATABASE ... TEMPLATE`` refuses to copy a database anybody is connected to,
so :func:`create_database` ends the template's other connections first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg


def plain_url(url: str) -> str:
    """``postgresql+asyncpg://...`` -> ``postgresql://...`` (what asyncpg and operators use)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def unique_name(prefix: str) -> str:
    """A database name nobody else uses: ``prefix``, this process's id and a random tail."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


async def admin_execute(admin_url: str, *statements: str) -> None:
    """Run ``statements`` one by one on the maintenance database (outside any transaction)."""
    conn = await asyncpg.connect(plain_url(admin_url), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


_END_CONNECTIONS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = '{name}' AND pid <> pg_backend_pid()"
)


async def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    """A new database ``name`` (dropped first if left over), empty or a copy of ``template``;
    its URL."""
    statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']
    if template is None:
        statements.append(f'CREATE DATABASE "{name}"')
    else:
        statements += [
            _END_CONNECTIONS.format(name=template),
            f'CREATE DATABASE "{name}" TEMPLATE "{template}"',
        ]
    await admin_execute(admin_url, *statements)
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name``, ending the connections still open to it."""
    await admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic, in a thread)."""
    from assign.db.migrate import upgrade

    await asyncio.to_thread(upgrade, url)


@contextlib.asynccontextmanager
async def scratch_database(
    admin_url: str,
    prefix: str,
    *,
    migrated: bool = True,
    template: str | None = None,
    keep: bool = False,
) -> AsyncIterator[str]:
    """A new database for the block (its URL): a copy of ``template`` when given, else migrated
    to the newest schema (empty when not ``migrated``); dropped afterwards unless ``keep``."""
    name = unique_name(prefix)
    url = await create_database(admin_url, name, template=template)
    try:
        if migrated and template is None:
            await migrate(url)
        yield url
    finally:
        if not keep:
            await drop_database(admin_url, name)
