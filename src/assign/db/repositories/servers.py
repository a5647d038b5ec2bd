"""SQL for servers: lookup by key, listing, status, slot accounting."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect, json
from assign.db.json import JSONArray
from assign.db.repositories import by_id, locks
from assign.db.tables import links, servers
from assign.db.views import SERVER_FIELDS, AnyRow
from assign.domain.states import (
    ASSIGN_SERVICE,
    IN_FLIGHT,
    LinkEvent,
    LinkStatus,
    Phase,
    ServerStatus,
    sources,
)


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    """The inserted server row."""
    return (await conn.execute(servers.insert().values(**values).returning(servers))).one()


async def get(
    conn: AsyncConnection, server_id: uuid.UUID, *, lock: bool = False
) -> Row[Any] | None:
    """The server row, or None; ``lock`` takes its row lock (PostgreSQL)."""
    query = sa.select(servers).where(servers.c.id == server_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


# Statements of every request (the key look-up) and of the hottest listing, built once: a
# statement object made anew each call costs its construction and its cache key (SQLAlchemy
# memoizes the key on the object) several times what executing it costs in Python.
_BY_KEY_HASH = sa.select(servers.c.id, servers.c.service, servers.c.name).where(
    servers.c.api_key_hash == sa.bindparam("key_hash")
)


async def get_by_key_hash(conn: AsyncConnection, key_hash: str) -> AnyRow | None:
    """(id, service, name) of the server owning the key, or None."""
    return (await conn.execute(_BY_KEY_HASH, {"key_hash": key_hash})).first()


async def list_servers(
    conn: AsyncConnection,
    *,
    statuses: Sequence[str] | None,
    inactive_before: datetime | None,
    service: str | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Servers matching the filters, highest priority first; ``inactive_before`` keeps those
    whose last heartbeat (or creation, when they never sent one) is older."""
    query = sa.select(servers)
    if statuses:
        query = query.where(servers.c.status.in_(statuses))
    if service:
        query = query.where(servers.c.service == service)
    if inactive_before is not None:
        query = query.where(
            sa.or_(
                servers.c.last_health_check < inactive_before,
                servers.c.last_health_check.is_(None),
            )
        )
    query = query.order_by(servers.c.priority.desc(), servers.c.name, servers.c.id).limit(limit)
    return (await conn.execute(query)).all()


async def list_available(
    conn: AsyncConnection, *, statuses: Sequence[str], service: str | None, limit: int
) -> Sequence[Row[Any]]:
    """Servers with a free slot, highest priority first, then most free slots; assign servers
    (which take no links) only when ``service`` asks for them."""
    query = _AVAILABLE_OF_SERVICE if service else _AVAILABLE
    values = {"statuses": list(statuses), "service": service or ASSIGN_SERVICE, "limit": limit}
    return (await conn.execute(query, values)).all()


async def list_available_json(
    conn: AsyncConnection, *, statuses: Sequence[str], service: str | None, limit: int
) -> JSONArray:
    """:func:`list_available` as ``views.server`` items that PostgreSQL encodes (see
    ``db.json``). PostgreSQL only."""
    query = _AVAILABLE_JSON_OF_SERVICE if service else _AVAILABLE_JSON
    values = {"statuses": list(statuses), "service": service or ASSIGN_SERVICE, "limit": limit}
    return await json.run(conn, query, values)


def available_listing(conn: AsyncConnection) -> Any:
    """The listing to call: :func:`list_available_json` where the database encodes JSON
    itself, else :func:`list_available` (same arguments)."""
    return list_available_json if dialect.encodes_json(conn) else list_available


def _available(query: sa.Select[Any], *, of_service: bool) -> sa.Select[Any]:
    """``query`` filtered and ordered as :func:`list_available` says (bound parameters
    ``statuses``, ``service``, ``limit``): the servers of ``service``, or all but it."""
    free = servers.c.max_threads - servers.c.active_tasks
    service = sa.bindparam("service", type_=sa.String)
    return (
        query.where(
            servers.c.status.in_(sa.bindparam("statuses", expanding=True)),
            free > 0,
            servers.c.service == service if of_service else servers.c.service != service,
        )
        .order_by(servers.c.priority.desc(), free.desc(), servers.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


_AVAILABLE = _available(sa.select(servers), of_service=False)
_AVAILABLE_OF_SERVICE = _available(sa.select(servers), of_service=True)
_AVAILABLE_COLUMNS = sa.select(
    *json.columns(servers, SERVER_FIELDS),
    sa.func.greatest(0, servers.c.max_threads - servers.c.active_tasks).label("avail_slots"),
)
_AVAILABLE_JSON = json.encoding(_available(_AVAILABLE_COLUMNS, of_service=False))
_AVAILABLE_JSON_OF_SERVICE = json.encoding(_available(_AVAILABLE_COLUMNS, of_service=True))


async def lock_placeable(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The ids among ``ids`` of tool servers that exist, locked ``FOR KEY SHARE`` in id order
    (PostgreSQL): a deletion of one waits until the links placed on it are committed, or went
    first and the server is left out."""
    return await locks.lock_ids(
        conn, servers, ids, key_share=True, where=servers.c.service != ASSIGN_SERVICE
    )


async def update(
    conn: AsyncConnection, server_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any] | None:
    """The updated server row, or None when it does not exist."""
    return await by_id.update(conn, servers, server_id, values)


_ADD_TASKS = (
    servers.update()
    .where(servers.c.id == sa.bindparam("b_id"))
    .values(active_tasks=servers.c.active_tasks + sa.bindparam("b_n", type_=sa.Integer))
)
_ADD_TASKS_SEEN = _ADD_TASKS.values(last_active=sa.bindparam("b_now"))
_LOCK_IDS = sa.text(
    "SELECT 1 FROM servers WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
)
_ADD_TASKS_PG = sa.text(
    "UPDATE servers SET active_tasks = servers.active_tasks + v.n FROM unnest("
    "CAST(:ids AS uuid[]), CAST(:ns AS integer[])) AS v(id, n) WHERE servers.id = v.id"
)


async def add_tasks(
    conn: AsyncConnection,
    deltas: Iterable[tuple[uuid.UUID | None, int]],
    *,
    active_at: datetime | None = None,
) -> None:
    """Apply ``active_tasks`` changes, summed per server (None server ids are ignored); with
    ``active_at``, the servers also seen active then.

    The rows change in id order (the order every writer takes them in). With several servers
    and array parameters (PostgreSQL), two statements whatever their number: the rows locked
    in id order, then one update; otherwise one update per server."""
    total: Counter[uuid.UUID] = Counter()
    for server_id, delta in deltas:
        if server_id is not None and delta:
            total[server_id] += delta
    changes = sorted((server_id, n) for server_id, n in total.items() if n)
    if not changes:
        return
    if len(changes) > 1 and active_at is None and dialect.bulk_arrays(conn):
        ids = [server_id for server_id, _ in changes]
        await conn.execute(_LOCK_IDS, {"ids": ids})
        await conn.execute(_ADD_TASKS_PG, {"ids": ids, "ns": [n for _, n in changes]})
        return
    statement = _ADD_TASKS if active_at is None else _ADD_TASKS_SEEN
    seen = {} if active_at is None else {"b_now": active_at}
    rows = [{"b_id": server_id, "b_n": n, **seen} for server_id, n in changes]
    await conn.execute(statement, rows[0] if len(rows) == 1 else rows)


async def release_queued(conn: AsyncConnection, server_id: uuid.UUID, now: datetime) -> int:
    """Return the server's queued links to pending; the number released."""
    result = await conn.execute(
        links.update()
        .where(links.c.server_id == server_id, links.c.status.in_(sources(LinkEvent.RELEASE)))
        .values(status=LinkStatus.PENDING, server_id=None, updated_at=now)
        .returning(links.c.id)
    )
    released = len(result.all())
    if released:
        await add_tasks(conn, [(server_id, -released)])
    return released


async def lock_links(conn: AsyncConnection, server_id: uuid.UUID, statuses: Any = None) -> None:
    """Lock the server's links (those in ``statuses``, else all: deleting the server clears the
    server of every one) in id order, before the server row (lock order: links, servers)."""
    if not dialect.locks_rows(conn):
        return
    condition = links.c.server_id == server_id
    if statuses is not None:
        condition = sa.and_(condition, links.c.status.in_(sorted(statuses)))
    locked = sa.select(links.c.id).where(condition).order_by(links.c.id).with_for_update()
    await conn.execute(sa.select(sa.func.count()).select_from(locked.subquery()))


async def count_in_flight(conn: AsyncConnection, server_id: uuid.UUID) -> int:
    """Links queued, running or connecting on the server (they hold its slots)."""
    query = sa.select(sa.func.count()).where(
        links.c.server_id == server_id, links.c.status.in_(sorted(IN_FLIGHT))
    )
    return int((await conn.execute(query)).scalar_one())


#: the error of the links a server's deletion cancels
DELETED = "server deleted"


async def delete(conn: AsyncConnection, server_id: uuid.UUID, now: datetime) -> bool:
    """Delete the server (its links keep no server). Its ``connect`` links (their profile lived
    on it) and failed connect-phase links (a retry would send them back to it) are canceled
    with the error "server deleted": with the server gone nobody could claim them."""
    await conn.execute(
        links.update()
        .where(
            links.c.server_id == server_id,
            sa.or_(
                links.c.status == LinkStatus.CONNECT,
                sa.and_(links.c.status == LinkStatus.FAILED, links.c.phase == Phase.CONNECT),
            ),
        )
        .values(status=LinkStatus.CANCELED, error=DELETED, updated_at=now)
    )
    result = await conn.execute(servers.delete().where(servers.c.id == server_id))
    return bool(result.rowcount)


def accepts(service_types: list[str] | None, service_type: str) -> bool:
    return not service_types or service_type in service_types


def can_take_links(row: Row[Any]) -> bool:
    return row.service != ASSIGN_SERVICE and row.status == ServerStatus.ONLINE
