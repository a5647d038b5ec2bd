"""SQL of the operators' counts: links, requests and servers by status."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import links, requests, servers
from assign.domain.states import ASSIGN_SERVICE


async def links_by_status(conn: AsyncConnection) -> dict[str, int]:
    """{status: how many links}."""
    rows = await conn.execute(sa.select(links.c.status, sa.func.count()).group_by(links.c.status))
    return {status: int(n) for status, n in rows}


async def requests_by_status(conn: AsyncConnection) -> dict[str, int]:
    """{status: how many requests}."""
    rows = await conn.execute(
        sa.select(requests.c.status, sa.func.count()).group_by(requests.c.status)
    )
    return {status: int(n) for status, n in rows}


async def tool_servers_by_status(conn: AsyncConnection) -> list[Any]:
    """(status, how many, their active_tasks, their max_threads) of the tool servers."""
    query = (
        sa.select(
            servers.c.status,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(servers.c.active_tasks), 0),
            sa.func.coalesce(sa.func.sum(servers.c.max_threads), 0),
        )
        .where(servers.c.service != ASSIGN_SERVICE)
        .group_by(servers.c.status)
    )
    return list((await conn.execute(query)).all())
