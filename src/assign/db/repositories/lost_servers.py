"""SQL of the dispatcher's step 1: silent servers found and set offline, and the queued links of
every server that is not online sent back to pending. Links are locked before servers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import locks
from assign.db.tables import links, servers
from assign.db.views import AnyRow
from assign.domain.states import (
    ASSIGN_SERVICE,
    IN_FLIGHT,
    LinkEvent,
    LinkStatus,
    ServerStatus,
    sources,
)


async def silent_servers(conn: AsyncConnection, *, silent_since: datetime) -> list[uuid.UUID]:
    """Online tool servers with no heartbeat since ``silent_since`` (or, never having sent one,
    created before it); not locked."""
    last_seen = sa.func.coalesce(servers.c.last_health_check, servers.c.created_at)
    query = sa.select(servers.c.id).where(
        servers.c.status == ServerStatus.ONLINE,
        servers.c.service != ASSIGN_SERVICE,
        last_seen < silent_since,
    )
    return sorted(r.id for r in await conn.execute(query))


def _not_online() -> Any:
    return links.c.server_id.in_(
        sa.select(servers.c.id).where(servers.c.status != ServerStatus.ONLINE)
    )


async def lock_step_one(
    conn: AsyncConnection, *, server_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Locks what step 1 changes, links first: the in-flight links of ``server_ids`` and the
    queued links of servers not online, then those servers (id order); the servers' ids."""
    queued_elsewhere = sa.and_(links.c.status == LinkStatus.QUEUED, _not_online())
    condition = (
        sa.or_(
            sa.and_(links.c.server_id.in_(server_ids), links.c.status.in_(sorted(IN_FLIGHT))),
            queued_elsewhere,
        )
        if server_ids
        else queued_elsewhere
    )
    rows = await locks.lock_where(conn, links, condition, columns=("server_id",))
    involved = {*server_ids, *(r.server_id for r in rows)}
    return await locks.lock_ids(conn, servers, involved)


async def expire_servers(
    conn: AsyncConnection, *, server_ids: Sequence[uuid.UUID], silent_since: datetime, now: datetime
) -> list[uuid.UUID]:
    """Those of ``server_ids`` still online and silent -> offline; their ids."""
    if not server_ids:
        return []
    last_seen = sa.func.coalesce(servers.c.last_health_check, servers.c.created_at)
    query = (
        servers.update()
        .where(
            servers.c.id.in_(server_ids),
            servers.c.status == ServerStatus.ONLINE,
            last_seen < silent_since,
        )
        .values(status=ServerStatus.OFFLINE, updated_at=now)
        .returning(servers.c.id)
    )
    return sorted(r.id for r in await conn.execute(query))


async def release_queued(conn: AsyncConnection, *, now: datetime) -> list[AnyRow]:
    """Queued links on servers that are not online -> pending (server cleared); (id, server_id)
    of each."""
    owners_query = sa.select(links.c.id, links.c.server_id).where(
        links.c.status.in_(sources(LinkEvent.RELEASE)), _not_online()
    )
    owners_query = owners_query.with_for_update()
    owners = (await conn.execute(owners_query)).all()
    if owners:
        await conn.execute(
            links.update()
            .where(links.c.id.in_([r.id for r in owners]))
            .values(status=LinkStatus.PENDING, server_id=None, updated_at=now)
        )
    return list(owners)
