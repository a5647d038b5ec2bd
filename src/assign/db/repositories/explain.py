"""SQL of "why is this link waiting": the fleet's tool servers and the queue ahead of a link."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import links, servers
from assign.db.views import AnyRow
from assign.domain.states import ASSIGN_SERVICE, LinkStatus


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
    up to ``cap``: three ranges of ``ix_links_status_priority_created_at_id``, each stopped at
    ``cap`` rows, the third (same priority and creation time: one bulk create) read by id."""
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
    total = 0
    for condition in ranges:
        # a literal LIMIT: a bound one may tempt PostgreSQL off the index
        capped = (
            sa.select(sa.literal(1).label("one"))
            .select_from(links)
            .where(condition)
            .limit(sa.literal_column(str(int(cap - total))))
            .subquery()
        )
        total += int(
            (await conn.execute(sa.select(sa.func.count()).select_from(capped))).scalar_one()
        )
        if total >= cap:
            break
    return total
