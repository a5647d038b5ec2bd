"""One side of a race held in an open transaction while the other waits for its row lock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from assign.errors import Conflict, InvalidInput
from assign.services.context import Context
from tests.factories import Factory

FIRST = ["held first", "other first"]


async def waiting(db: asyncpg.Connection) -> None:
    """Until a session of this database waits for a row lock (at most 10 s)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        if await db.fetchval(query):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second transaction never waited for the first")


async def race(
    db: asyncpg.Connection,
    held_ctx: Context,
    held: Callable[[], Awaitable[Any]],
    other: Callable[[], Awaitable[Any]],
) -> tuple[Any, Any]:
    """``held()`` in a transaction kept open until ``other()`` is seen waiting for a lock; then
    committed. (held's result, other's result or the error it raised.)"""
    async with held_ctx.db.transaction():
        first = await held()
        task = asyncio.create_task(other())
        await waiting(db)
        assert not task.done()
    try:
        second = await asyncio.wait_for(task, 10)
    except (Conflict, InvalidInput) as exc:
        second = exc
    return first, second


async def one_link(db: asyncpg.Connection, link_id: str) -> asyncpg.Record:
    return await db.fetchrow(
        "SELECT status, server_id, error, phase FROM links WHERE id = $1", uuid.UUID(link_id)
    )


async def running_link(factory: Factory) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a server, a link of a new request placed on it and claimed: running)."""
    server = await factory.server()
    request = await factory.request()
    [link] = await factory.links(request, 1, server_id=server["id"])
    await factory.claim(server)
    return server, link
