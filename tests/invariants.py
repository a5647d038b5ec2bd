"""Checks of what must hold in the database after any sequence of operations."""

from __future__ import annotations

import sqlalchemy as sa

from assign.db.tables import links, servers
from assign.domain.states import IN_FLIGHT
from assign.services.context import Context


async def assert_active_tasks_consistent(ctx: Context) -> dict[str, int]:
    """Every server's ``active_tasks`` equals its links queued, running or connecting.

    Returns {server id: active_tasks} so a test can also check the numbers it expects.
    """
    in_flight = (
        sa.select(links.c.server_id, sa.func.count().label("n"))
        .where(links.c.status.in_(sorted(IN_FLIGHT)))
        .group_by(links.c.server_id)
        .subquery()
    )
    query = sa.select(
        servers.c.id, servers.c.active_tasks, sa.func.coalesce(in_flight.c.n, 0)
    ).select_from(servers.outerjoin(in_flight, in_flight.c.server_id == servers.c.id))
    async with ctx.db.read() as conn:
        rows = (await conn.execute(query)).all()
        orphans = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    links.c.status.in_(sorted(IN_FLIGHT)), links.c.server_id.is_(None)
                )
            )
        ).scalar_one()
    wrong = {str(sid): (tasks, n) for sid, tasks, n in rows if tasks != n}
    assert not wrong, f"active_tasks != in-flight links (server: (active_tasks, links)): {wrong}"
    assert orphans == 0, f"{orphans} in-flight link(s) without a server"
    return {str(sid): tasks for sid, tasks, _ in rows}
