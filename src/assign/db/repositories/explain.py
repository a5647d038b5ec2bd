"""SQL of "why is this link waiting": the fleet's tool servers and the queue ahead of a link."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import links, requests, servers
from assign.db.views import AnyRow
from assign.domain.states import ASSIGN_SERVICE, LinkStatus


async def link_to_explain(conn: AsyncConnection, link_id: uuid.UUID) -> AnyRow | None:
    """What explain reads of a link, with its request's status (``request_status``, None when
    the request is gone), or None: one look-up of each primary key."""
    query = (
        sa.select(
            links.c.id,
            links.c.request_id,
            links.c.status,
            links.c.service_type,
            links.c.email,
            links.c.priority,
            links.c.created_at,
            links.c.retry_count,
            links.c.max_retries,
            links.c.retry_at,
            requests.c.status.label("request_status"),
        )
        .select_from(links.outerjoin(requests, requests.c.id == links.c.request_id))
        .where(links.c.id == link_id)
    )
    return (await conn.execute(query)).first()


async def tool_servers(conn: AsyncConnection) -> list[AnyRow]:
    """Every tool server: id, priority, free slots, service types, status, last heartbeat."""
    query = sa.select(
        servers.c.id,
        servers.c.priority,
        (servers.c.max_threads - servers.c.active_tasks).label("free"),
        servers.c.service_types,
        servers.c.status,
        servers.c.last_health_check,
    ).where(servers.c.service != ASSIGN_SERVICE)
    return list((await conn.execute(query)).all())


async def ahead_in_line(
    conn: AsyncConnection,
    *,
    priority: int,
    created_at: datetime,
    link_id: uuid.UUID,
    cap: int,
) -> int:
    """Pending links before this one in dispatch order (priority DESC, created_at, id), counted
    up to ``cap``: one statement over three ranges of ``ix_links_status_priority_created_at_id``
    read one after the other, stopped once ``cap`` rows are found in all; the third (same
    priority and creation time: one bulk create) read by id."""
    pending = links.c.status == LinkStatus.PENDING
    ranges = (
        sa.and_(pending, links.c.priority > priority),
        sa.and_(pending, links.c.priority == priority, links.c.created_at < created_at),
        sa.and_(
            pending,
            links.c.priority == priority,
            links.c.created_at == created_at,
            links.c.id < link_id,
        ),
    )
    # literal LIMITs: a bound one may tempt PostgreSQL off the index
    limit: sa.ColumnElement[int] = sa.literal_column(str(int(cap)))
    parts = [
        sa.select(sa.literal(1).label("one")).select_from(links).where(c).limit(limit).subquery()
        for c in ranges
    ]
    ahead = sa.union_all(*(sa.select(p.c.one) for p in parts)).subquery()
    capped = sa.select(ahead.c.one).limit(limit).subquery()
    return int((await conn.execute(sa.select(sa.func.count()).select_from(capped))).scalar_one())
