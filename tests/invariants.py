"""Checks of what must hold in the database after any sequence of operations."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

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


#: the outcomes a finished attempt may have
OUTCOMES = {"completed", "failed", "stale", "lost", "canceled"}


async def check_attempts(ctx: Context) -> dict[str, list[dict[str, object]]]:
    """The attempts kept by the database's triggers agree with the links.

    * every stored attempt is finished, with an outcome, none earlier than its start: a running
      or connecting link's current attempt is the link itself (migration 0011), never a row;
    * numbering is 1..n for each link, without a gap;
    * ``link_counts`` equals the links counted by request and status.

    Returns {link id: its attempts, oldest first}, a working link's current attempt last (open:
    on the link's server, in its phase, since its ``started_at``, numbered n+1), so a test can
    check the attempts it expects.
    """
    from assign.db.tables import attempts
    from assign.domain.states import WORKING

    async with ctx.db.read(snapshot=True) as conn:
        rows = (
            await conn.execute(sa.select(attempts).order_by(attempts.c.link_id, attempts.c.number))
        ).all()
        working = (
            await conn.execute(
                sa.select(links.c.id, links.c.server_id, links.c.phase, links.c.started_at).where(
                    links.c.status.in_(sorted(WORKING))
                )
            )
        ).all()
        kept, counted = await _link_counts(conn)
    assert kept == counted, f"link_counts {kept} != links counted {counted}"
    by_link: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_link.setdefault(str(row.link_id), []).append(dict(row._mapping))
    for link_id, found in by_link.items():
        _check_link_attempts(link_id, found)
    for link in working:
        found = by_link.setdefault(str(link.id), [])
        found.append(
            {"link_id": link.id, "number": len(found) + 1, "phase": link.phase,
             "server_id": link.server_id, "started_at": link.started_at, "finished_at": None,
             "outcome": None, "error": None, "profile_url": None, "post_url": None}
        )  # fmt: skip
    return by_link


async def _link_counts(
    conn: AsyncConnection,
) -> tuple[dict[tuple[object, object], int], dict[tuple[object, object], int]]:
    """(``link_counts`` by request and status, the links counted by request and status)."""
    from assign.db.tables import link_counts

    counted = {
        (r[0], r[1]): int(r[2])
        for r in await conn.execute(
            sa.select(links.c.request_id, links.c.status, sa.func.count()).group_by(
                links.c.request_id, links.c.status
            )
        )
    }
    total = sa.func.sum(link_counts.c.n)
    kept = {
        (r[0], r[1]): int(r[2])
        for r in await conn.execute(
            sa.select(link_counts.c.request_id, link_counts.c.status, total)
            .group_by(link_counts.c.request_id, link_counts.c.status)
            .having(total != 0)
        )
    }
    return kept, counted


def _check_link_attempts(link_id: str, found: list[dict[str, object]]) -> None:
    """One link's stored attempts: numbered 1..n, each finished with an outcome."""
    numbers = [a["number"] for a in found]
    assert numbers == list(range(1, len(found) + 1)), f"{link_id}: numbered {numbers}"
    for a in found:
        assert a["finished_at"] is not None, f"{link_id}: attempt {a['number']} stored open"
        assert a["outcome"] in OUTCOMES, f"{link_id}: outcome {a['outcome']!r}"
        assert a["finished_at"] >= a["started_at"], f"{link_id}: ends before it starts"  # type: ignore[operator]
