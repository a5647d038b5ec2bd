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
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.engine import Database
from assign.db.migrate import upgrade
from assign.security.crypto import Cipher
from assign.services.context import Context
from assign.services.keys import KeyCache
from assign.settings import Settings, normalize_database_url
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
TABLES = ("links", "requests", "servers", "sites", "accounts", "settings", "admin_keys",
          "idempotency_keys", "dispatcher_lease", "attempts", "throughput", "link_counts",
          "ui_sessions", "dispatcher_ticks", "links_archive")  # fmt: skip


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


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin_execute(statements: list[str]) -> None:
    assert PG_ADMIN_URL is not None
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (dropped at the end)."""
    if PG_ADMIN_URL is None:
        pytest.skip(PG_SKIP)
    name = f"assign_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin_execute([f'CREATE DATABASE "{name}"']))
    url = _with_database(PG_ADMIN_URL, name)
    upgrade(url)
    yield url
    asyncio.run(_admin_execute([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "assign.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
            await conn.execute(
                sa.text(
                    'INSERT INTO settings ("group", key, value, updated_at) VALUES '
                    "('rate_limit', 'max_posts_per_day', '50', now()), "
                    "('rate_limit', 'cooldown_minutes', '5', now())"
                )
            )
    finally:
        await engine.dispose()


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
