"""Use cases of servers: create (with its key), list, status changes, heartbeat, delete."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from assign.db import views
from assign.db.json import JSONArray
from assign.db.repositories import servers as repo
from assign.domain.states import ASSIGN_SERVICE, LinkStatus, ServerStatus
from assign.errors import Conflict, NotFound, existing
from assign.security import keys
from assign.services import wake
from assign.services.context import Context


async def create_server(
    ctx: Context,
    *,
    name: str,
    service: str,
    ip: str | None = None,
    max_threads: int = 10,
    priority: int = 0,
    status: str = ServerStatus.ONLINE,
    service_types: list[str] | None = None,
) -> dict[str, Any]:
    """The new server with its ``api_key`` (the only time the key is shown)."""
    now = ctx.clock.now()
    api_key = keys.generate_key()
    values = {
        "id": uuid.uuid4(),
        "name": name,
        "ip": ip,
        "service": service,
        "status": status,
        "max_threads": max_threads,
        "priority": priority,
        "service_types": service_types or [],
        "api_key_hash": keys.hash_key(api_key),
        "active_threads": 0,
        "active_tasks": 0,
        "created_at": now,
        "updated_at": now,
    }
    row = await ctx.db.run(lambda conn: repo.insert(conn, values))
    return views.server(row) | {"api_key": api_key}


async def list_servers(
    ctx: Context,
    *,
    statuses: list[str] | None,
    inactive_minutes: float | None,
    service: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    inactive_before = (
        ctx.clock.now() - timedelta(minutes=inactive_minutes)
        if inactive_minutes is not None
        else None
    )
    async with ctx.db.read() as conn:
        rows = await repo.list_servers(
            conn, statuses=statuses, inactive_before=inactive_before, service=service, limit=limit
        )
    return [views.server(r) for r in rows]


async def list_available(
    ctx: Context, *, statuses: list[str], service: str | None, limit: int = 1000
) -> list[dict[str, Any]] | JSONArray:
    """The servers as dicts, or on PostgreSQL already encoded as a JSON array by the database."""
    async with ctx.db.read() as conn:
        find = repo.available_listing(conn)  # on PostgreSQL, encoded by the database
        found = await find(conn, statuses=statuses, service=service, limit=limit)
    if isinstance(found, JSONArray):
        return found
    return [views.server(r) for r in found]


async def get_server(ctx: Context, *, server_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        row = await repo.get(conn, server_id)
    return views.server(existing(row, "Server not found"))


async def _set_status(
    conn: Any, server_id: uuid.UUID, status: str, now: datetime
) -> dict[str, Any]:
    if status != ServerStatus.ONLINE:
        await repo.lock_links(conn, server_id, [LinkStatus.QUEUED])  # links before the server
    row = await repo.get(conn, server_id, lock=True)
    if row is None:
        raise NotFound("Server not found")
    values: dict[str, Any] = {"status": status, "updated_at": now}
    row = await repo.update(conn, server_id, values)
    if status != ServerStatus.ONLINE:
        await repo.release_queued(conn, server_id, now)
        row = await repo.get(conn, server_id)
    assert row is not None
    return views.server(row)


async def set_status(ctx: Context, *, server_id: uuid.UUID, status: str) -> dict[str, Any]:
    """The server after the change; going offline/maintenance returns its queued links to pending."""
    now = ctx.clock.now()
    return await ctx.db.run(lambda conn: _set_status(conn, server_id, status, now))


async def update_server(
    ctx: Context, *, server_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply admin changes; a status change goes through the same rules as PUT /status."""
    now = ctx.clock.now()
    status = changes.pop("status", None)

    async def work(conn: Any) -> dict[str, Any]:
        if status is not None and status != ServerStatus.ONLINE:
            await repo.lock_links(conn, server_id, [LinkStatus.QUEUED])  # links before the server
        row = await repo.get(conn, server_id, lock=True)
        if row is None:
            raise NotFound("Server not found")
        if changes:
            if "service_types" in changes and changes["service_types"] is None:
                changes["service_types"] = []
            await repo.update(conn, server_id, {**changes, "updated_at": now})
        if status is not None:
            return await _set_status(conn, server_id, status, now)
        row = await repo.get(conn, server_id)
        assert row is not None
        return views.server(row)

    return await ctx.db.run(work)


async def delete_server(ctx: Context, *, server_id: uuid.UUID) -> None:
    """Delete a server with no link queued, running or connecting (409 otherwise); its connect
    links and failed connect-phase links are canceled ("server deleted").

    Its links are locked first, then its row ``FOR UPDATE``: a transaction placing links on it
    (connect step, retry, bulk placement, assignment) holds the row ``FOR KEY SHARE`` or more, so
    one of the two waits for the other and no link is left bound to no server."""
    now = ctx.clock.now()

    async def work(conn: Any) -> None:
        await repo.lock_links(conn, server_id)
        row = await repo.get(conn, server_id, lock=True)
        if row is None:
            raise NotFound("Server not found")
        if await repo.count_in_flight(conn, server_id):
            raise Conflict("Server still has links queued, running or connecting")
        await repo.delete(conn, server_id, now)

    await ctx.db.run(work)
    ctx.known_keys.clear()  # its key stops working here at once (see services.keys)


async def heartbeat(
    ctx: Context, *, server_id: uuid.UUID, active_threads: int | None
) -> dict[str, Any]:
    """Record a heartbeat; an offline server comes back online (maintenance stays)."""
    now = ctx.clock.now()

    async def work(conn: Any) -> Any:
        row = await repo.get(conn, server_id, lock=True)
        if row is None:
            raise NotFound("Server not found")
        values: dict[str, Any] = {"last_health_check": now, "updated_at": now}
        if active_threads is not None:
            values["active_threads"] = active_threads
        if row.status == ServerStatus.OFFLINE:
            values["status"] = ServerStatus.ONLINE
        if row.status == ServerStatus.OFFLINE or row.last_health_check is None:
            await wake.notify(ctx, conn)  # it is ready for work now
        return await repo.update(conn, server_id, values)

    row = await ctx.db.run(work)
    assert row is not None
    return views.server(row)


async def find_by_key(ctx: Context, *, key_hash: str) -> tuple[uuid.UUID, str] | None:
    """(server id, service) owning the key digest, or None."""
    async with ctx.db.read() as conn:
        row = await repo.get_by_key_hash(conn, key_hash)
    return None if row is None else (row.id, row.service)


def is_assign_server(service: str) -> bool:
    return service == ASSIGN_SERVICE
