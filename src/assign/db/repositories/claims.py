"""SQL of the tool API's claims, a handful of statements whatever the count.

Every statement is built once (building one and its cache key costs more Python than running it).
Lock order: links (in id order, or SKIP LOCKED), then the server's row in one short update, then
requests in id order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.tables import links, servers
from assign.db.views import AnyRow
from assign.domain.states import LinkStatus, ServerStatus

_ONLINE = sa.exists().where(
    servers.c.id == sa.bindparam("sid"), servers.c.status == ServerStatus.ONLINE
)


def _claim_statement(source: str, target: str) -> Any:
    picked = (
        sa.select(links.c.id)
        .where(links.c.server_id == sa.bindparam("sid"), links.c.status == source)
        .order_by(links.c.priority.desc(), links.c.created_at, links.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    picked = picked.with_for_update(skip_locked=True)
    # a CTE runs once; an IN (subquery) may be rescanned per row, and each rescan of
    # LIMIT ... FOR UPDATE SKIP LOCKED skips the rows just updated and picks new ones
    chosen = picked.cte("picked")
    return (
        links.update()
        .where(links.c.id.in_(sa.select(chosen.c.id)), links.c.status == source, _ONLINE)
        .values(status=target, started_at=sa.bindparam("now"), updated_at=sa.bindparam("now"))
        .returning(links)
    )


_CLAIMS: dict[str, Any] = {
    source: _claim_statement(source, target)
    for source, target in (
        (LinkStatus.QUEUED, LinkStatus.RUNNING),
        (LinkStatus.CONNECT, LinkStatus.CONNECTING),
    )
}


async def claim_links(
    conn: AsyncConnection, *, server_id: uuid.UUID, source: str, limit: int, now: datetime
) -> list[AnyRow]:
    """Up to ``limit`` of the server's ``source`` links (queued or connect) moved to running
    (connecting), dispatch order; none unless the server is online."""
    if limit <= 0:
        return []
    statement = _CLAIMS[source]
    values = {"sid": server_id, "limit": limit, "now": now}
    rows = list((await conn.execute(statement, values)).all())
    rows.sort(key=lambda r: (-r.priority, r.created_at, r.id))
    return rows


# One statement for what a claim does nearly every time (PostgreSQL, run alone): the server read
# (not locked), its queued links taken as claim_links does, unless it is not online, and
# whether it has connect links, which a claim with free slots then takes in a transaction of
# its own (against the slots under the server's lock, see services.tool). The update names the
# links by id alone: ``picked`` locked them queued, so their status cannot have changed, and a
# status condition let the planner, which often counts one queued link in a table whose
# statistics predate a bulk create, read every queued link of every server once per picked
# one (18,700 comparisons, 12 ms, for a claim of 50 among 400 queued).
_CLAIM_QUEUED_PG = sa.text(
    "WITH srv AS MATERIALIZED (SELECT servers.status, servers.max_threads, "
    "servers.active_tasks, servers.last_health_check, servers.last_active FROM servers "
    "WHERE servers.id = :sid), "
    "picked AS MATERIALIZED (SELECT links.id FROM links WHERE links.server_id = :sid "
    "AND links.status = :queued ORDER BY links.priority DESC, links.created_at, links.id "
    "LIMIT :limit FOR UPDATE SKIP LOCKED), "
    "claimed AS (UPDATE links SET status = :running, started_at = :now, updated_at = :now "
    "WHERE links.id IN (SELECT picked.id FROM picked) "
    "AND EXISTS (SELECT 1 FROM srv WHERE srv.status = :online) RETURNING links.*) "
    "SELECT srv.status AS server_status, srv.max_threads, srv.active_tasks, "
    "srv.last_health_check, srv.last_active, EXISTS (SELECT 1 FROM links "
    "WHERE links.server_id = :sid AND links.status = :connect) AS has_connect, claimed.* "
    "FROM srv LEFT JOIN claimed ON true"
).columns(
    sa.column("server_status", sa.String()),
    servers.c.max_threads,
    servers.c.active_tasks,
    servers.c.last_health_check,
    servers.c.last_active,
    sa.column("has_connect", sa.Boolean()),
    *links.c,
)


@dataclass(frozen=True)
class QueuedClaim:
    """What :func:`claim_queued` found: the server as read, and the links it took."""

    server: AnyRow
    has_connect: bool
    rows: list[AnyRow]


async def claim_queued(
    conn: AsyncConnection, *, server_id: uuid.UUID, limit: int, now: datetime
) -> QueuedClaim | None:
    """Up to ``limit`` of the server's queued links moved to running, dispatch order, in one
    statement (PostgreSQL); with the server's status, slots and seen times as read (its
    ``server_status``), and whether it has connect links. None when it does not exist."""
    values = {
        "sid": server_id,
        "limit": max(limit, 0),
        "now": now,
        "queued": LinkStatus.QUEUED.value,
        "running": LinkStatus.RUNNING.value,
        "connect": LinkStatus.CONNECT.value,
        "online": ServerStatus.ONLINE.value,
    }
    found = (await conn.execute(_CLAIM_QUEUED_PG, values)).all()
    if not found:
        return None
    rows = [r for r in found if r.id is not None]
    rows.sort(key=lambda r: (-r.priority, r.created_at, r.id))
    return QueuedClaim(found[0], bool(found[0].has_connect), rows)


_SERVER = sa.select(
    servers.c.status,
    servers.c.max_threads,
    servers.c.active_tasks,
    servers.c.last_health_check,
    servers.c.last_active,
).where(servers.c.id == sa.bindparam("sid"))


async def claiming_server(conn: AsyncConnection, server_id: uuid.UUID) -> AnyRow | None:
    """(status, max_threads, active_tasks, last_health_check, last_active) of the server, not
    locked; None when it does not exist."""
    return (await conn.execute(_SERVER, {"sid": server_id})).first()


_LOCK_SERVER = _SERVER.with_for_update()


async def lock_server(conn: AsyncConnection, server_id: uuid.UUID) -> AnyRow | None:
    """:func:`claiming_server`, its row locked (exact slots for a connect claim)."""
    return (await conn.execute(_LOCK_SERVER, {"sid": server_id})).first()


_HAS = sa.select(
    sa.exists().where(
        links.c.server_id == sa.bindparam("sid"), links.c.status == sa.bindparam("status")
    )
)


async def has_links(conn: AsyncConnection, server_id: uuid.UUID, status: str) -> bool:
    """Whether the server has a link in ``status``."""
    return bool((await conn.execute(_HAS, {"sid": server_id, "status": status})).scalar())


_SEEN = (
    servers.update()
    .where(servers.c.id == sa.bindparam("sid"), servers.c.status == ServerStatus.ONLINE)
    .values(
        last_active=sa.bindparam("now"),
        last_health_check=sa.case(
            (sa.bindparam("heartbeat", type_=sa.Boolean), sa.bindparam("now")),
            else_=servers.c.last_health_check,
        ),
    )
)


async def mark_claimed(
    conn: AsyncConnection, *, server_id: uuid.UUID, heartbeat: bool, now: datetime
) -> None:
    """An online server seen claiming (``heartbeat``: its heartbeat too)."""
    await conn.execute(_SEEN, {"sid": server_id, "now": now, "heartbeat": heartbeat})
