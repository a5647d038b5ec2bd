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
from assign.dispatcher.leader import Leadership
from assign.services.context import Context


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


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_lease_and_tick_record_do_not_park_sqlites_writer(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the leader's lease and tick record are jobs of the writer thread like any
    other write: parking the writer for a block on the event loop (``Database.transaction``)
    every tick kept it idle 3.6 % of a busy fleet's run (sampled)."""
    writer = ctx.db._writer
    assert writer is not None

    def parked() -> None:
        raise AssertionError("the writer thread was parked")

    monkeypatch.setattr(writer, "held", parked)
    first, second = Leadership(ctx, lease_seconds=5), Leadership(ctx, lease_seconds=5)
    now = ctx.clock.now()
    assert await first.acquire(now)
    await first.record_tick(now)
    assert await first.acquire(now)  # renewed: still the holder
    assert not await second.acquire(now)
    await first.release()
    assert await second.acquire(now)
    await second.release()
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(dispatcher_ticks.c.holder))).all()
    assert [r.holder for r in rows] == [first.holder]
