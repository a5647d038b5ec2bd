"""Use cases of the tool API: a tool server claims its work (waiting for it, if asked)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db import views
from assign.db.repositories import claims as claims_repo
from assign.db.repositories import servers as servers_repo
from assign.domain.states import LinkStatus, ServerStatus
from assign.errors import NotFound
from assign.services.context import Context

#: how old a server's heartbeat or activity time may be before a claim writes it again
SEEN_REFRESH = timedelta(seconds=1)


async def claim(
    ctx: Context,
    *,
    server_id: uuid.UUID,
    limit: int,
    wait_seconds: float = 0.0,
    gone: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Queued links -> running, then connect links -> connecting while slots are free.

    The claim is the server's heartbeat when it is online; a server in maintenance or offline
    gets nothing and nothing changes. With ``wait_seconds``, when nothing is ready the call
    waits for the dispatcher to place links on the server (woken by it, see ``wake.Hub``), at
    most that long; once ``gone`` is set (the caller left) it claims nothing more. Each claimed
    link carries its decrypted ``password``: the server is about to use it.
    """
    if wait_seconds <= 0:
        rows, _ = await _claim_once(ctx, server_id=server_id, limit=limit, heartbeat=True)
        return _claimed(ctx, rows)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    ready = await ctx.hub.register(ctx, server_id)
    try:
        heartbeat = True
        while True:
            ready.clear()  # before looking: an assignment from now on wakes the wait below
            rows, online = await _claim_once(
                ctx, server_id=server_id, limit=limit, heartbeat=heartbeat
            )
            heartbeat = False
            if rows or not online:
                return _claimed(ctx, rows)
            left = deadline - loop.time()
            if left <= 0 or not await _woken(ready, gone, left):
                return []
    finally:
        ctx.hub.unregister(server_id, ready)


async def _woken(ready: asyncio.Event, gone: asyncio.Event | None, seconds: float) -> bool:
    """True when ``ready`` was set within ``seconds`` and the caller is still there."""
    waiters = [asyncio.ensure_future(ready.wait())]
    if gone is not None:
        waiters.append(asyncio.ensure_future(gone.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return ready.is_set() and not (gone is not None and gone.is_set())


async def _claim_once(
    ctx: Context, *, server_id: uuid.UUID, limit: int, heartbeat: bool
) -> tuple[list[Any], bool]:
    """(claimed rows, whether the server is online), in one transaction.

    The server's row (which every result of the server updates) is read, not locked: it is
    locked only to take connect links against its exact free slots, and written only when its
    heartbeat or activity time is a second old or more (a claim a second is the same news).
    """
    now = ctx.clock.now()
    if ctx.db.combines_writes and not ctx.db.in_transaction():
        return await _claim_in_one(ctx, server_id=server_id, limit=limit, heartbeat=heartbeat)

    async def work(conn: AsyncConnection) -> tuple[list[Any], bool]:
        server = await claims_repo.claiming_server(conn, server_id)
        if server is None:
            raise NotFound("Server not found")
        if server.status != ServerStatus.ONLINE:
            return [], False
        rows = await claims_repo.claim_links(
            conn, server_id=server_id, source=LinkStatus.QUEUED, limit=limit, now=now
        )
        touched = False
        more = min(limit - len(rows), server.max_threads - server.active_tasks)
        if more > 0 and await claims_repo.has_links(conn, server_id, LinkStatus.CONNECT):
            locked = await claims_repo.lock_server(conn, server_id)  # links first, then the server
            assert locked is not None
            more = min(limit - len(rows), locked.max_threads - locked.active_tasks)
            connecting = await claims_repo.claim_links(
                conn, server_id=server_id, source=LinkStatus.CONNECT, limit=more, now=now
            )
            if connecting:
                await servers_repo.add_tasks(conn, [(server_id, len(connecting))])
                rows.extend(connecting)
            touched = True
        beat = heartbeat and _stale(server.last_health_check, now)
        if touched or beat or _stale(server.last_active, now):
            await claims_repo.mark_claimed(conn, server_id=server_id, heartbeat=heartbeat, now=now)
        return rows, True

    return await ctx.db.run(work)


async def _claim_in_one(
    ctx: Context, *, server_id: uuid.UUID, limit: int, heartbeat: bool
) -> tuple[list[Any], bool]:
    """:func:`_claim_once` on PostgreSQL: the queued links in one statement run alone, then, only
    when there is more to do, connect links against the exact free slots (the server locked,
    as in :func:`_claim_once`) or the seen times, each in a transaction of its own."""
    now = ctx.clock.now()
    found = await ctx.db.run_alone(
        lambda conn: claims_repo.claim_queued(conn, server_id=server_id, limit=limit, now=now)
    )
    if found is None:
        raise NotFound("Server not found")
    server, rows = found.server, found.rows
    if server.server_status != ServerStatus.ONLINE:
        return [], False
    more = min(limit - len(rows), server.max_threads - server.active_tasks)
    if more > 0 and found.has_connect:

        async def connect(conn: AsyncConnection) -> list[Any]:
            # the server's row first: the connect links are taken with SKIP LOCKED (no wait)
            locked = await claims_repo.lock_server(conn, server_id)
            if locked is None or locked.status != ServerStatus.ONLINE:
                return []
            more = min(limit - len(rows), locked.max_threads - locked.active_tasks)
            connecting = await claims_repo.claim_links(
                conn, server_id=server_id, source=LinkStatus.CONNECT, limit=more, now=now
            )
            if connecting:
                await servers_repo.add_tasks(conn, [(server_id, len(connecting))])
            await claims_repo.mark_claimed(conn, server_id=server_id, heartbeat=heartbeat, now=now)
            return connecting

        rows.extend(await ctx.db.run(connect))
    elif (heartbeat and _stale(server.last_health_check, now)) or _stale(server.last_active, now):
        await ctx.db.run_alone(
            lambda conn: claims_repo.mark_claimed(
                conn, server_id=server_id, heartbeat=heartbeat, now=now
            )
        )
    return rows, True


def _stale(seen: datetime | None, now: datetime) -> bool:
    return seen is None or now - seen >= SEEN_REFRESH


def _claimed(ctx: Context, rows: Sequence[Any]) -> list[dict[str, Any]]:
    metrics.links_claimed.inc(len(rows))
    decrypt = ctx.cipher.decrypt
    out = []
    for row in rows:
        item = views.link(row)
        item["password"] = decrypt(row.password_enc)
        out.append(item)
    return out
