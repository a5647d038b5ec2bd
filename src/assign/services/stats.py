"""Counts by state for operators, the demo and metrics."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from assign.db.tables import links, requests, servers
from assign.services.context import Context


async def overview(ctx: Context) -> dict[str, Any]:
    """Links, requests and servers counted by status, plus slot totals."""
    async with ctx.db.read(snapshot=True) as conn:
        by_link: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.select(links.c.status, sa.func.count()).group_by(links.c.status)
                )
            ).all()
        )
        by_request: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.select(requests.c.status, sa.func.count()).group_by(requests.c.status)
                )
            ).all()
        )
        server_rows = (
            await conn.execute(
                sa.select(
                    servers.c.status,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(servers.c.active_tasks), 0),
                    sa.func.coalesce(sa.func.sum(servers.c.max_threads), 0),
                )
                .where(servers.c.service != "assign")
                .group_by(servers.c.status)
            )
        ).all()
    by_server = {status: int(n) for status, n, _, _ in server_rows}
    by_server["active_tasks"] = sum(int(r[2]) for r in server_rows)
    by_server["max_threads"] = sum(int(r[3]) for r in server_rows)
    return {
        "links": {k: int(v) for k, v in by_link.items()},
        "requests": {k: int(v) for k, v in by_request.items()},
        "servers": by_server,
    }
