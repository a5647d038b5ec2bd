"""SQL the console's pages read that no API listing does: pages of requests by name, a
server's links in flight, accounts' activity, counts of the small tables, the last tick."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import accounts, dispatcher_ticks, links, requests, servers
from assign.db.views import AnyRow
from assign.domain.states import ASSIGN_SERVICE, IN_FLIGHT


async def count_by_status(conn: AsyncConnection, table: sa.Table) -> dict[str, int]:
    """{status: n} of a small table (servers without assign servers, or requests)."""
    query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
    if table is servers:
        query = query.where(servers.c.service != ASSIGN_SERVICE)
    return {status: int(n) for status, n in await conn.execute(query)}


async def last_tick(conn: AsyncConnection) -> AnyRow | None:
    """(holder, ticked_at) of the acting dispatcher's last full tick, or None."""
    query = sa.select(dispatcher_ticks.c.holder, dispatcher_ticks.c.ticked_at)
    return (await conn.execute(query.limit(1))).first()


async def requests_page(
    conn: AsyncConnection,
    *,
    statuses: Sequence[str],
    service_type: str | None,
    name: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Up to ``limit`` requests matching, newest first, after the request ``after`` (keyset)."""
    query = sa.select(requests)
    if statuses:
        query = query.where(requests.c.status.in_(statuses))
    if service_type:
        query = query.where(requests.c.service_type == service_type)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(requests.c.name.ilike(f"%{escaped}%", escape="\\"))
    if after is not None:
        mark = sa.select(requests.c.created_at).where(requests.c.id == after).scalar_subquery()
        query = query.where(
            sa.or_(
                requests.c.created_at < mark,
                sa.and_(requests.c.created_at == mark, requests.c.id < after),
            )
        )
    order = (requests.c.created_at.desc(), requests.c.id.desc())
    return (await conn.execute(query.order_by(*order).limit(limit))).all()


async def links_in_flight(
    conn: AsyncConnection, server_id: uuid.UUID, limit: int
) -> Sequence[Row[Any]]:
    """Up to ``limit`` of the server's queued, running and connecting links, oldest start first."""
    query = (
        sa.select(links)
        .where(links.c.server_id == server_id, links.c.status.in_(sorted(IN_FLIGHT)))
        .order_by(links.c.started_at.nulls_last(), links.c.assigned_at, links.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def accounts_page(
    conn: AsyncConnection, *, group_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
) -> Sequence[Row[Any]]:
    """Up to ``limit`` accounts (of a group, or all) by email, after the account ``after``."""
    query = sa.select(accounts)
    if group_id is not None:
        query = query.where(accounts.c.group_id == group_id)
    if after is not None:
        mark = sa.select(accounts.c.email).where(accounts.c.id == after).scalar_subquery()
        query = query.where(
            sa.or_(
                accounts.c.email > mark, sa.and_(accounts.c.email == mark, accounts.c.id > after)
            )
        )
    return (await conn.execute(query.order_by(accounts.c.email, accounts.c.id).limit(limit))).all()


async def last_posts(conn: AsyncConnection, emails: Sequence[str]) -> dict[str, datetime]:
    """{email: latest completion} of these accounts (each email's own index range)."""
    if not emails:
        return {}
    query = (
        sa.select(links.c.email, sa.func.max(links.c.completed_at))
        .where(links.c.email.in_(list(emails)), links.c.completed_at.is_not(None))
        .group_by(links.c.email)
    )
    return {email: at for email, at in await conn.execute(query) if at is not None}
