"""The row of who leads and when it last ticked (``dispatcher_ticks``): two dispatchers writing
it at once — a leader that lost its lock and its successor — never collide."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from assign.db.engine import Database
from assign.db.repositories import leadership
from assign.db.tables import dispatcher_ticks


# PostgreSQL only: SQLite has one writer, nothing to race
@pytest.mark.parametrize("db_kind", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_first_ticks_at_once_both_land(clean_database: str) -> None:
    first, second = Database(clean_database, pool_size=1), Database(clean_database, pool_size=1)
    try:
        async with first.transaction() as conn:
            await conn.execute(dispatcher_ticks.delete())
        now = datetime.now(UTC)
        async with first.transaction() as conn:
            await leadership.record_tick(conn, holder="a", now=now)  # the first row, uncommitted
            # the other dispatcher writes it too and waits for this commit
            other = asyncio.create_task(
                second.run(lambda c: leadership.record_tick(c, holder="b", now=now))
            )
            await asyncio.sleep(0.3)
            assert not other.done()
        await asyncio.wait_for(other, 10)  # before: a unique violation on pk_dispatcher_ticks
        async with first.transaction() as conn:
            rows = (await conn.execute(sa.select(dispatcher_ticks.c.holder))).all()
        assert [r.holder for r in rows] == ["b"]
    finally:
        await first.dispose()
        await second.dispose()
