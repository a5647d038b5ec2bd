"""A tool server's result or claim against the dispatcher's expiry steps and maintenance."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from assign.dispatcher import steps
from assign.errors import Conflict
from assign.services import claims as claims_service
from assign.services import servers as servers_service
from assign.services import tool as tool_service
from assign.services.context import Context
from tests.factories import Factory
from tests.integration.races.holding import FIRST, one_link, race, running_link, waiting
from tests.invariants import assert_active_tasks_consistent

pytestmark = [pytest.mark.postgres]


@pytest.mark.parametrize("first", FIRST)
async def test_a_result_against_the_stale_expiry(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    server, link = await running_link(factory)
    sid, lid = uuid.UUID(server["id"]), uuid.UUID(link["id"])
    later = other_ctx.clock.now() + timedelta(minutes=20)  # past the stale timeout

    def report(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: tool_service.report_result(
            ctx, server_id=sid, link_id=lid, status="completed",
            profile_url=None, post_url=None, error=None, details=None,
        )  # fmt: skip

    def expire(ctx: Context) -> Callable[[], Awaitable[Any]]:
        tick = steps.TickReport()
        return lambda: steps.expire_stale_links(ctx, later, tick)

    if first == "held first":  # completed: nothing stale any more
        await race(db, held_ctx, report(held_ctx), expire(other_ctx))
        assert (await one_link(db, link["id"]))["status"] == "completed"
    else:  # failed as stale: the late result is refused
        _, refused = await race(db, held_ctx, expire(held_ctx), report(other_ctx))
        assert isinstance(refused, Conflict)
        assert (await one_link(db, link["id"]))["status"] == "failed"
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    await assert_active_tasks_consistent(other_ctx)


async def test_a_result_and_the_lost_server_step_never_deadlock(
    sides: tuple[Context, Context],
    factory: Factory,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The result path locks its link, then its server; step 1 must take the same order. A
    result that holds its link (and has yet to free the server's slot) while step 1 runs: step 1
    waits for the link without holding the server, so the result's server update goes through.
    (With step 1 taking the server first, the two would deadlock.)"""
    _, other_ctx = sides
    server, link = await running_link(factory)
    sid, lid = uuid.UUID(server["id"]), uuid.UUID(link["id"])
    later = other_ctx.clock.now() + timedelta(minutes=10)  # the server is silent by then
    tick = steps.TickReport()

    caplog.set_level(logging.INFO, logger="assign.db.engine")
    transaction = db.transaction()
    await transaction.start()
    # the result path of services.tool, held after its first statement
    await db.execute(
        "UPDATE links SET status = 'completed', completed_at = now() WHERE id = $1", lid
    )
    task = asyncio.create_task(steps.expire_lost_servers(other_ctx, later, tick))
    await waiting(db)
    await db.execute("UPDATE servers SET active_tasks = active_tasks - 1 WHERE id = $1", sid)
    await transaction.commit()
    await asyncio.wait_for(task, 10)

    retried = [r for r in caplog.records if r.getMessage() == "transaction retried"]
    assert retried == []  # no deadlock, not even one retried away
    assert tick.lost_failed == 0  # the link had completed (other tests' servers are lost too)
    assert await db.fetchval("SELECT status FROM servers WHERE id = $1", sid) == "offline"
    assert (await one_link(db, link["id"]))["status"] == "completed"
    await assert_active_tasks_consistent(other_ctx)


async def _held_while(
    db: asyncpg.Connection,
    held_ctx: Context,
    held: Callable[[], Awaitable[Any]],
    other: Callable[[], Awaitable[Any]],
) -> tuple[Any, Any]:
    """``held()`` in a transaction kept open while ``other()`` starts and either waits for a row
    lock or finishes without one (a claim skips locked links); then committed."""
    async with held_ctx.db.transaction():
        first = await held()
        task = asyncio.create_task(other())
        for _ in range(100):
            if task.done() or await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ):
                break
            await asyncio.sleep(0.02)
    return first, await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("first", FIRST)
async def test_maintenance_against_a_claim(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    """A server set to maintenance while it claims: either the claim came first (its links run
    on and finish normally) or the maintenance did (the claim gets nothing and the queued links
    are back in the queue); never a link queued on a server in maintenance or running unclaimed."""
    held_ctx, other_ctx = sides
    server = await factory.server()
    request = await factory.request()
    links = await factory.links(request, 3, server_id=server["id"])
    sid = uuid.UUID(server["id"])

    def maintenance(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: servers_service.set_status(ctx, server_id=sid, status="maintenance")

    def claim(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: claims_service.claim(ctx, server_id=sid, limit=10)

    if first == "held first":  # maintenance first: nothing to claim, the links are pending
        _, claimed = await _held_while(db, held_ctx, maintenance(held_ctx), claim(other_ctx))
        assert claimed == []
        expected = {("pending", None)}
    else:  # the claim first: its links run on; maintenance releases nothing more
        claimed, _ = await _held_while(db, held_ctx, claim(held_ctx), maintenance(other_ctx))
        assert sorted(str(c["id"]) for c in claimed) == sorted(str(lk["id"]) for lk in links)
        expected = {("running", sid)}
    rows = [await one_link(db, lk["id"]) for lk in links]
    assert {(r["status"], r["server_id"]) for r in rows} == expected
    assert (await factory.get_server(server["id"]))["status"] == "maintenance"
    # a link placed there explicitly now is accepted, and still not claimed (§9)
    [placed] = await factory.links(await factory.request(), 1, server_id=server["id"])
    assert await claims_service.claim(other_ctx, server_id=sid, limit=10) == []
    assert (await one_link(db, placed["id"]))["status"] == "queued"
    await assert_active_tasks_consistent(other_ctx)
