"""services.statistics: the leader analyzes ``links`` once a bulk create has made PostgreSQL's
statistics stale (the planner's view of the pending links), and not again until it changes."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from assign.db import dialect
from assign.services import statistics
from assign.services.context import Context
from tests.factories import Factory


async def _stale(ctx: Context) -> bool:
    async with ctx.db.read() as conn:
        return await dialect.stale_statistics(
            conn, "links", at_least=statistics.AT_LEAST, fraction=statistics.FRACTION
        )


async def test_a_bulk_create_gets_links_analyzed(ctx: Context, factory: Factory) -> None:
    if ctx.db.is_sqlite:  # SQLite plans without statistics: nothing to refresh
        assert await statistics.refresh(ctx) is False
        return
    await statistics.refresh(ctx)  # whatever earlier tests left
    request = await factory.request()
    for _ in range(2):
        await factory.links(request, 1000)
    for _ in range(60):  # each backend reports its counts within a second of going idle
        if await _stale(ctx):
            break
        await asyncio.sleep(0.1)
    assert await _stale(ctx)
    assert await statistics.refresh(ctx) is True
    assert not await _stale(ctx)
    assert await statistics.refresh(ctx) is False
    async with ctx.db.read() as conn:
        analyzed = await conn.execute(
            sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'links'")
        )
        assert analyzed.scalar_one() is not None
