"""Fixtures of the race tests: one migrated database for the package, and two contexts on it
with pools of their own (the held side and the other)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.engine import Database
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.conftest import PG_ADMIN_URL, PG_SKIP, TEST_SECRET, make_settings
from tests.factories import Factory
from tests.integration.procs import migrated_database


@pytest.fixture(scope="package")
async def url(pg_template: str) -> AsyncIterator[str]:
    if PG_ADMIN_URL is None:
        pytest.skip(PG_SKIP)
    async with migrated_database(PG_ADMIN_URL, "assign_race", pg_template) as scratch:
        yield scratch


def _context(url: str, clock: FrozenClock) -> Context:
    settings = make_settings(url)
    return Context(
        db=Database(settings.database_url, pool_size=2),
        settings=settings,
        cipher=Cipher(TEST_SECRET),
        clock=clock,
    )


@pytest.fixture
async def sides(url: str) -> AsyncIterator[tuple[Context, Context]]:
    """Two contexts on the same database, each with its own pool: the held side and the other."""
    clock = FrozenClock()
    held, other = _context(url, clock), _context(url, clock)
    try:
        yield held, other
    finally:
        await held.db.dispose()
        await other.db.dispose()


@pytest.fixture
async def factory(sides: tuple[Context, Context]) -> AsyncIterator[Factory]:
    app = create_app(context=sides[1], migrate=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        yield await Factory.create(sides[1], http)


@pytest.fixture
async def db(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()
