"""Fixtures of the multi-process tests: a fresh PostgreSQL database per test, and the processes
started on it (each stopped and waited for at teardown, before the database is dropped)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from assign.app import create_app
from assign.clock import Clock
from assign.db.engine import Database
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.conftest import PG_ADMIN_URL, TEST_SECRET, make_settings
from tests.factories import Factory
from tests.integration.procs import Processes, migrated_database


@pytest.fixture
async def scratch_db(pg_template: str) -> AsyncIterator[str]:
    """The URL (``postgresql://``) of a new migrated database (a copy of the session's
    template), dropped after the test."""
    assert PG_ADMIN_URL is not None
    async with migrated_database(PG_ADMIN_URL, "assign_it", pg_template) as url:
        yield url


@pytest.fixture
async def db(scratch_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test itself to the scratch database."""
    conn = await asyncpg.connect(scratch_db)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def procs(scratch_db: str, tmp_path: Path) -> Iterator[Processes]:
    """Starts ``assign`` subprocesses; stops and waits for every one of them at teardown."""
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture
async def local_ctx(scratch_db: str) -> AsyncIterator[Context]:
    """Assign's use cases in the test process, on the scratch database, with the real clock."""
    settings = make_settings(scratch_db)
    database = Database(settings.database_url, pool_size=2)
    try:
        yield Context(db=database, settings=settings, cipher=Cipher(TEST_SECRET), clock=Clock())
    finally:
        await database.dispose()


@pytest.fixture
async def local_factory(local_ctx: Context) -> AsyncIterator[Factory]:
    """Test data made through Assign's own API, served in the test process (ASGI, no socket)."""
    app = create_app(context=local_ctx, migrate=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        yield await Factory.create(local_ctx, http)
