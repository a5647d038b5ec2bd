"""Fixtures: every API test runs on SQLite and on PostgreSQL (a real server, never a mock).

PostgreSQL comes from ``ASSIGN_TEST_POSTGRES_URL`` (a URL of a maintenance database the tests may
create databases from), else ``postgresql://root@127.0.0.1:5432/postgres`` when that answers.
Without one, PostgreSQL cases skip with a message saying so, unless
``ASSIGN_TEST_REQUIRE_POSTGRES=1`` (CI), where that is an error.

Hypothesis runs under the profile ``default``, or ``deep`` when ``ASSIGN_TEST_DEEP=1``
(``make test-deep``): ten times the examples and four times the steps of each stateful run.
Property and state-machine tests take their sizes from the loaded profile
(``hypothesis.settings.default``, or :func:`examples` and :func:`steps` for a multiple of it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import hypothesis
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.engine import Database
from assign.db.migrate import upgrade
from assign.db.tables import metadata
from assign.security.crypto import Cipher
from assign.services.context import Context
from assign.services.keys import KeyCache
from assign.settings import Settings, normalize_database_url
from assign.testing import databases
from tests.factories import Factory

DEEP = os.environ.get("ASSIGN_TEST_DEEP") == "1"
#: hypothesis's own defaults in normal runs; many more examples, longer stateful runs when deep
hypothesis.settings.register_profile("default", max_examples=100, stateful_step_count=50)
hypothesis.settings.register_profile("deep", max_examples=1000, stateful_step_count=200)
hypothesis.settings.load_profile("deep" if DEEP else "default")


def examples(fraction: float) -> int:
    """``fraction`` of the loaded profile's ``max_examples`` (at least 1): 0.1 is 10 normally,
    100 under the deep profile."""
    return max(1, round(hypothesis.settings.default.max_examples * fraction))


def steps(fraction: float) -> int:
    """``fraction`` of the loaded profile's ``stateful_step_count`` (at least 1)."""
    return max(1, round(hypothesis.settings.default.stateful_step_count * fraction))


TEST_SECRET = "test-secret-" + "x" * 40
DEFAULT_PG = "postgresql://root@127.0.0.1:5432/postgres"
REQUIRE_PG = os.environ.get("ASSIGN_TEST_REQUIRE_POSTGRES") == "1"
REQUIRE_BROWSER = os.environ.get("ASSIGN_TEST_REQUIRE_BROWSER") == "1"


def _pg_admin_url() -> str | None:
    url = os.environ.get("ASSIGN_TEST_POSTGRES_URL")
    if url:
        return normalize_database_url(url)
    candidate = normalize_database_url(DEFAULT_PG)

    async def probe() -> bool:
        engine = create_async_engine(candidate, connect_args={"timeout": 2})
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False
        finally:
            await engine.dispose()

    return candidate if asyncio.run(probe()) else None


PG_ADMIN_URL = _pg_admin_url()
if REQUIRE_PG and PG_ADMIN_URL is None:
    raise pytest.UsageError("ASSIGN_TEST_REQUIRE_POSTGRES=1 but no PostgreSQL answers")
PG_SKIP = "PostgreSQL not reachable: set ASSIGN_TEST_POSTGRES_URL to run the PostgreSQL cases"


_with_database = databases.with_database


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """The name of a migrated PostgreSQL database of this session that scratch databases are
    cloned from (nobody connects to it after its migration); dropped at the end."""
    if PG_ADMIN_URL is None:
        pytest.skip(PG_SKIP)
    name = databases.unique_name("assign_template")
    url = asyncio.run(databases.create_database(PG_ADMIN_URL, name))
    try:
        upgrade(url)
        yield name
    finally:
        asyncio.run(databases.drop_database(PG_ADMIN_URL, name))


@pytest.fixture(scope="session")
def pg_url(pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database shared by this session's API tests, each of which starts
    from the rows it had when new (see :func:`_reset_postgres`); dropped at the end."""
    assert PG_ADMIN_URL is not None
    name = databases.unique_name("assign_test")
    url = asyncio.run(databases.create_database(PG_ADMIN_URL, name, template=pg_template))
    _FRESH_ROWS[url] = asyncio.run(_read_rows(url))
    yield url
    asyncio.run(databases.drop_database(PG_ADMIN_URL, name))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "assign.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


#: the rows of each shared PostgreSQL database when it was new (the shipped settings), by URL
_FRESH_ROWS: dict[str, dict[str, list[asyncpg.Record]]] = {}


async def _read_rows(url: str) -> dict[str, list[asyncpg.Record]]:
    conn = await asyncpg.connect(databases.plain_url(url))
    try:
        return {
            t.name: await conn.fetch(f'SELECT * FROM "{t.name}"') for t in metadata.tables.values()
        }
    finally:
        await conn.close()


async def _reset_postgres(url: str) -> None:
    """Every table of ``url`` back to the rows it had when new, in one transaction.

    Rows are deleted, children first, rather than truncated: on these small tables a DELETE
    costs about 25 ms, a TRUNCATE (new files for every table and index) about 300 ms, and a
    fresh clone of the template plus its DROP about 650 ms (measured on this machine)."""
    fresh = _FRESH_ROWS[url]
    conn = await asyncpg.connect(databases.plain_url(url))
    try:
        async with conn.transaction():
            await conn.execute(_DELETE_ALL)
            for table, rows in fresh.items():
                if rows:
                    await conn.copy_records_to_table(
                        table, records=[tuple(r) for r in rows], columns=list(rows[0].keys())
                    )
    finally:
        await conn.close()


_DELETE_ALL = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(metadata.sorted_tables))


@pytest.fixture
def database_url(db_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A clean database of the parametrized kind, migrated, with the shipped settings."""
    if db_kind == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "assign.db"
        shutil.copy(template, path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
async def clean_database(database_url: str) -> str:
    if not database_url.startswith("sqlite"):
        await _reset_postgres(database_url)
    return database_url


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "secret_key": TEST_SECRET,
        "admin_key": None,
        "retry_base_seconds": 30,
        "retry_max_seconds": 3600,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
async def ctx(clean_database: str, settings_overrides: dict[str, Any]) -> AsyncIterator[Context]:
    settings = make_settings(clean_database, **settings_overrides)
    db = Database(settings.database_url, pool_size=5)
    context = Context(
        db=db,
        settings=settings,
        cipher=Cipher(TEST_SECRET),
        clock=FrozenClock(),
        known_keys=KeyCache(settings.key_cache_seconds),
    )
    yield context
    await context.hub.close()
    await db.dispose()


@pytest.fixture
def clock(ctx: Context) -> FrozenClock:
    assert isinstance(ctx.clock, FrozenClock)
    return ctx.clock


@pytest.fixture
async def client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context=ctx, migrate=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        yield http


@pytest.fixture
async def factory(ctx: Context, client: httpx.AsyncClient) -> Factory:
    return await Factory.create(ctx, client)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ASSIGN_TEST_REQUIRE_POSTGRES=1 a skipped PostgreSQL case is a failure, and under
    ASSIGN_TEST_REQUIRE_BROWSER=1 a skipped browser test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_PG and report.skipped and item.get_closest_marker("postgres") is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"PostgreSQL case skipped although PostgreSQL is required: {report.longrepr}"
        )
    elif REQUIRE_BROWSER and report.skipped and item.get_closest_marker("browser") is not None:
        report.outcome = "failed"
        report.longrepr = f"Browser test skipped although a browser is required: {report.longrepr}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` first (in their order), so that with several test processes
    the long ones start at once and the short ones fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
