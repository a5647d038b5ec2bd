"""Migration 0011 on a database with attempts under way: the open attempts revision 0005 stored
become the links' current ones, end as finished rows with the same numbers, and come back as
rows on a downgrade."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from assign.db.migrate import alembic_config, upgrade
from assign.db.tables import attempts
from assign.testing import databases
from tests.api.test_history import admin_link, outcomes
from tests.conftest import PG_ADMIN_URL, PG_SKIP
from tests.factories import Factory
from tests.invariants import check_attempts

BEFORE = "0010"


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """A new database at revision 0010, the one before attempts were written when they end."""
    if db_kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'assign.db'}"
        upgrade(url, BEFORE)
        yield url
        return
    if PG_ADMIN_URL is None:
        pytest.skip(PG_SKIP)
    name = databases.unique_name("assign_migration")
    url = asyncio.run(databases.create_database(PG_ADMIN_URL, name))
    try:
        upgrade(url, BEFORE)
        yield url
    finally:
        asyncio.run(databases.drop_database(PG_ADMIN_URL, name))


@pytest.fixture
async def clean_database(database_url: str) -> AsyncIterator[str]:
    yield database_url  # new for each test: nothing to reset


async def stored(factory: Factory, link: dict[str, object]) -> list[tuple[int, str | None]]:
    """(number, outcome) of the link's attempts as rows of ``attempts``."""
    async with factory.ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(attempts.c.number, attempts.c.outcome)
            .where(attempts.c.link_id == uuid.UUID(str(link["id"])))
            .order_by(attempts.c.number)
        )
        return [(r.number, r.outcome) for r in rows]


async def test_open_attempts_become_the_links_and_come_back_on_downgrade(
    database_url: str, factory: Factory
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    first, second, third = await factory.links(request, 3)
    for link in (first, second):
        assert (await factory.assign(link["id"], server)).status_code == 200
    await factory.claim(server)
    await factory.result(second["id"], server, status="failed", error="captcha")
    retried = await factory.client.put(
        f"/api/v1/worker/links/{second['id']}/retry", headers=factory.worker
    )
    assert retried.status_code == 200, retried.text
    assert (await factory.assign(second["id"], server)).status_code == 200
    await factory.claim(server)
    # revision 0005 stored the open attempts
    assert await stored(factory, first) == [(1, None)]
    assert await stored(factory, second) == [(1, "failed"), (2, None)]

    await asyncio.to_thread(upgrade, database_url)
    assert await stored(factory, first) == []
    assert await stored(factory, second) == [(1, "failed")]
    assert outcomes(await admin_link(factory, first["id"])) == [(1, None)]
    assert outcomes(await admin_link(factory, second["id"])) == [(1, "failed"), (2, None)]
    await check_attempts(factory.ctx)

    for link in (first, second):
        assert (await factory.result(link["id"], server)).status_code == 200
    assert await stored(factory, first) == [(1, "completed")]
    assert await stored(factory, second) == [(1, "failed"), (2, "completed")]
    await check_attempts(factory.ctx)

    assert (await factory.assign(third["id"], server)).status_code == 200
    await factory.claim(server)
    assert await stored(factory, third) == []
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), BEFORE)
    assert await stored(factory, third) == [(1, None)]
    assert await stored(factory, second) == [(1, "failed"), (2, "completed")]
