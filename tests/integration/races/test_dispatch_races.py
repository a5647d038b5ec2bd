"""The dispatcher's placement (step 5) against an explicit assignment of the same server."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from assign.dispatcher import steps
from assign.services import links as links_service
from assign.services.context import Context
from tests.factories import TOOL, Factory
from tests.integration.races.holding import race
from tests.invariants import assert_active_tasks_consistent

pytestmark = [pytest.mark.postgres]


async def test_the_dispatcher_takes_only_the_slots_left_under_the_server_lock(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection
) -> None:
    """Step 5 reads free slots without locking the servers, then takes them under each server's
    lock: a slot taken meanwhile (``PUT /links/:id/assign``, held open here) is not taken
    twice, and a server whose row another writer holds is waited for, not skipped."""
    held_ctx, other_ctx = sides
    server = await factory.server(max_threads=2)
    beat = await factory.client.post(f"{TOOL}/heartbeat", headers=factory.tool(server))
    assert beat.status_code == 200
    request = await factory.request()
    explicit, *_ = await factory.links(request, 4)
    sid = uuid.UUID(server["id"])
    # the package's database keeps other tests' servers: none of them may take these links
    await db.execute("UPDATE servers SET status = 'offline' WHERE id <> $1", sid)

    async def place() -> Any:
        tick = steps.TickReport()
        await steps.assign_pending(other_ctx, other_ctx.clock.now(), tick)
        return tick

    async def assign() -> Any:
        return await links_service.assign_link(
            held_ctx, link_id=uuid.UUID(explicit["id"]), server_id=sid
        )

    # the dispatcher reads 2 free slots before the explicit assignment commits
    original = steps.repo.free_servers

    async def read_then_assign(conn: Any, **kwargs: Any) -> Any:
        rows = await original(conn, **kwargs)
        assert [r.free for r in rows if r.id == sid] == [2]
        return rows

    steps.repo.free_servers = read_then_assign  # type: ignore[assignment]
    try:
        _, tick = await race(db, held_ctx, assign, place)
    finally:
        steps.repo.free_servers = original  # type: ignore[assignment]
    assert tick.assigned == 1
    queued = await db.fetchval(
        "SELECT count(*) FROM links WHERE server_id = $1 AND status = 'queued'", sid
    )
    assert queued == 2  # the explicit one and one placed by the dispatcher
    assert (await factory.get_server(server["id"]))["active_tasks"] == 2
    await assert_active_tasks_consistent(other_ctx)
