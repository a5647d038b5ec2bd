"""Counts by state for operators, the demo and metrics."""

from __future__ import annotations

from typing import Any

from assign.db.repositories import stats as repo
from assign.services.context import Context


async def overview(ctx: Context) -> dict[str, Any]:
    """Links, requests and servers counted by status, plus slot totals."""
    async with ctx.db.read(snapshot=True) as conn:
        by_link = await repo.links_by_status(conn)
        by_request = await repo.requests_by_status(conn)
        server_rows = await repo.tool_servers_by_status(conn)
    by_server = {status: int(n) for status, n, _, _ in server_rows}
    by_server["active_tasks"] = sum(int(r[2]) for r in server_rows)
    by_server["max_threads"] = sum(int(r[3]) for r in server_rows)
    return {
        "links": {k: int(v) for k, v in by_link.items()},
        "requests": {k: int(v) for k, v in by_request.items()},
        "servers": by_server,
    }
