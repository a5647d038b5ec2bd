"""On PostgreSQL the dispatcher's placements commit without waiting for the WAL flush, and
nothing else does (docs/guarantees.md, "Work is not lost")."""

from __future__ import annotations

from typing import Any

import pytest

from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.dispatcher.test_tick import heartbeat, no_rate_limit
from tests.factories import Factory


@pytest.fixture
def db_kind() -> str:
    return "postgres"  # SQLite has no such setting: its commits wait for nothing


async def test_placements_commit_without_waiting_for_the_flush_and_nothing_else_does(
    ctx: Context, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the placement transaction runs with ``synchronous_commit`` off (redone when
    lost; a claim's flushed commit covers it) and each statement planned with its parameters;
    every other transaction with the server's settings."""
    from assign.db.repositories import dispatch

    seen: list[str] = []
    free_servers = dispatch.free_servers

    async def spying(conn: Any, **kwargs: Any) -> Any:
        for setting in ("synchronous_commit", "plan_cache_mode"):
            seen.append((await conn.exec_driver_sql(f"SHOW {setting}")).scalar_one())
        return await free_servers(conn, **kwargs)

    monkeypatch.setattr(dispatch, "free_servers", spying)
    await no_rate_limit(factory)
    server = await factory.server(max_threads=2)
    await heartbeat(factory, server)
    await factory.links(await factory.request(), 2)
    assert (await tick(ctx)).assigned == 2
    assert seen == ["off", "force_custom_plan"]
    async with ctx.db.transaction() as conn:
        assert (await conn.exec_driver_sql("SHOW synchronous_commit")).scalar_one() == "on"
        assert (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar_one() == "auto"
