"""SQL for links: bulk insert, the documented listings, and every transition of one link or many."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Unpack

import orjson
import sqlalchemy as sa
from asyncpg.pgproto.pgproto import UUID as PgUUID
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect, json, rules
from assign.db.json import JSONArray
from assign.db.repositories.retries import (  # noqa: F401 (the retries of links, kept here too)
    mark_final_failed,
    retry,
    retry_where,
)
from assign.db.tables import links
from assign.db.views import LINK_FIELDS, AnyRow
from assign.domain.filters import LinkScope
from assign.domain.states import (
    IN_FLIGHT,
    UNFINISHED,
    WORKING,
    LinkEvent,
    LinkStatus,
    sources,
)

#: the columns a new link is written with, in the table's order (the order of the rows
#: ``services.links.create_links`` builds; tests/unit/test_link_columns.py spells it out)
INSERT_COLUMNS = tuple(
    c.name
    for c in links.c
    if c.name not in {"error", "profile_url", "post_url", "retry_at", "started_at", "completed_at"}
)
DISPATCH_ORDER = (links.c.priority.desc(), links.c.created_at, links.c.id)


_DETAILS = INSERT_COLUMNS.index("details")


def new_ids(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) UUIDs from one read of the system's random source.

    They are asyncpg's UUIDs (a ``uuid.UUID`` subclass, what it returns for uuid columns), which
    are made and COPY-encoded without running Python code; ``uuid.UUID(bytes=...)`` costs about
    3 µs each.
    """
    data = bytearray(os.urandom(16 * n))
    data[6::16] = bytes(b & 0x0F | 0x40 for b in data[6::16])  # version 4
    data[8::16] = bytes(b & 0x3F | 0x80 for b in data[8::16])  # RFC 4122 variant
    raw = bytes(data)
    return [PgUUID(raw[i : i + 16]) for i in range(0, 16 * n, 16)]


async def insert_many(conn: AsyncConnection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert prepared link rows, each a tuple in ``INSERT_COLUMNS`` order (``details`` a dict or
    None); the transaction must be started.

    On PostgreSQL one COPY consumes ``rows`` lazily: asyncpg sends every ~512 KiB it has encoded,
    so building the next rows (a generator) overlaps with the server inserting the previous ones.
    An exception raised by ``rows`` aborts the COPY.
    """
    if dialect.copies(conn):
        await dialect.copy_records(conn, "links", INSERT_COLUMNS, _copy_records(rows))
    else:
        await conn.execute(
            links.insert(), [dict(zip(INSERT_COLUMNS, row, strict=True)) for row in rows]
        )


def _copy_records(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    # COPY takes jsonb as text; only rows with details need rebuilding
    dumps = orjson.dumps
    at = _DETAILS
    for row in rows:
        details = row[at]
        if details is not None:
            row = (*row[:at], dumps(details).decode(), *row[at + 1 :])
        yield row


async def get(conn: AsyncConnection, link_id: uuid.UUID, *, lock: bool = False) -> Row[Any] | None:
    """The link row, or None; ``lock`` takes its row lock (PostgreSQL)."""
    query = sa.select(links).where(links.c.id == link_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def list_links(
    conn: AsyncConnection, *, statuses: Sequence[str], **scope: Unpack[LinkScope]
) -> Sequence[Row[Any]]:
    """Links in ``statuses`` (pending ones only without a server), dispatch order."""
    query = _listed(sa.select(links), statuses, *_narrowing(scope))
    return (await conn.execute(query.order_by(*DISPATCH_ORDER).limit(scope["limit"]))).all()


def link_listing(conn: AsyncConnection) -> Any:
    """The listing to call: :func:`list_links_json` where the database encodes JSON itself,
    else :func:`list_links` (same arguments)."""
    return list_links_json if dialect.encodes_json(conn) else list_links


async def list_links_json(
    conn: AsyncConnection, *, statuses: Sequence[str], **scope: Unpack[LinkScope]
) -> JSONArray:
    """:func:`list_links` as ``views.link`` items that PostgreSQL encodes (see ``db.json``).
    PostgreSQL only."""
    service_type, request_id, server_id = _narrowing(scope)
    given = {"service_type": service_type, "request_id": request_id, "server_id": server_id}
    values: dict[str, Any] = {name: value for name, value in given.items() if value}
    statement = _json_listing(tuple(sorted(set(statuses))), tuple(values))
    return await json.run(conn, statement, {**values, "limit": scope["limit"]})


@cache
def _json_listing(statuses: tuple[str, ...], filters: tuple[str, ...]) -> sa.Select[Any]:
    """The statement of :func:`list_links_json` for these statuses and filters (bound parameters
    named after the filters, and ``limit``), built once: building it and its cache key costs
    more Python than running it."""
    query = _listed(sa.select(*json.columns(links, LINK_FIELDS)), statuses, None, None, None)
    for name in filters:
        query = query.where(links.c[name] == sa.bindparam(name, type_=links.c[name].type))
    limit = sa.bindparam("limit", type_=sa.Integer)
    return json.encoding(query.order_by(*DISPATCH_ORDER).limit(limit))


def _listed(
    query: sa.Select[Any],
    statuses: Sequence[str],
    service_type: str | None,
    request_id: uuid.UUID | None,
    server_id: uuid.UUID | None,
) -> sa.Select[Any]:
    if len(statuses) == 1:
        query = query.where(links.c.status == statuses[0])
    else:
        query = query.where(links.c.status.in_(statuses))
    if LinkStatus.PENDING in statuses:
        query = query.where(
            sa.or_(links.c.status != LinkStatus.PENDING, links.c.server_id.is_(None))
        )
    return _filters(query, service_type, request_id, server_id)


async def list_stale(
    conn: AsyncConnection, *, started_before: datetime, **scope: Unpack[LinkScope]
) -> Sequence[Row[Any]]:
    """Running/connecting links started before ``started_before``, oldest start first."""
    query = sa.select(links).where(
        links.c.status.in_(sorted(WORKING)), links.c.started_at < started_before
    )
    query = _filters(query, *_narrowing(scope))
    order = (links.c.started_at, links.c.id)
    return (await conn.execute(query.order_by(*order).limit(scope["limit"]))).all()


async def list_retryable(
    conn: AsyncConnection,
    *,
    service_type: str | None,
    request_id: uuid.UUID | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Failed links with retries left, dispatch order."""
    query = _filters(sa.select(links).where(rules.RETRYABLE), service_type, request_id, None)
    return (await conn.execute(query.order_by(*DISPATCH_ORDER).limit(limit))).all()


def _narrowing(scope: LinkScope) -> tuple[str | None, uuid.UUID | None, uuid.UUID | None]:
    """``scope``'s filters, as ``_filters`` takes them."""
    return scope["service_type"], scope["request_id"], scope["server_id"]


def _filters(
    query: sa.Select[Any],
    service_type: str | None,
    request_id: uuid.UUID | None,
    server_id: uuid.UUID | None,
) -> sa.Select[Any]:
    if service_type:
        query = query.where(links.c.service_type == service_type)
    if request_id:
        query = query.where(links.c.request_id == request_id)
    if server_id:
        query = query.where(links.c.server_id == server_id)
    return query


async def assign(
    conn: AsyncConnection, *, link_id: uuid.UUID, server_id: uuid.UUID, now: datetime
) -> Row[Any] | None:
    """The link moved pending -> queued on the server, or None when it was not pending."""
    query = (
        links.update()
        .where(links.c.id == link_id, links.c.status.in_(sources(LinkEvent.ASSIGN)))
        .values(status=LinkStatus.QUEUED, server_id=server_id, assigned_at=now, updated_at=now)
        .returning(links)
    )
    return (await conn.execute(query)).first()


async def account_stats(
    conn: AsyncConnection, *, email: str, request_id: uuid.UUID | None, day_start: datetime
) -> Row[Any]:
    """pending_count, today_count, total_completed, last_post_at, request_pending, request_completed.

    Completions count whatever the link's status now (PRODUCT §9): today's are those whose
    ``completed_at`` is today, the total those whose create phase completed."""
    pending = links.c.status.in_(sorted(UNFINISHED))
    done = rules.CREATE_COMPLETED
    in_request = links.c.request_id == request_id if request_id else sa.false()
    query = sa.select(
        sa.func.count().filter(pending).label("pending_count"),
        sa.func.count().filter(links.c.completed_at >= day_start).label("today_count"),
        sa.func.count().filter(done).label("total_completed"),
        sa.func.max(links.c.completed_at).label("last_post_at"),
        sa.func.count().filter(pending, in_request).label("request_pending"),
        sa.func.count().filter(done, in_request).label("request_completed"),
    ).where(links.c.email == email)
    return (await conn.execute(query)).one()


async def count_by_status(
    conn: AsyncConnection, request_id: uuid.UUID
) -> tuple[Sequence[Any], Any]:
    """((status, count) rows, (profile_count, post_count)) of one request's links."""
    rows = (
        await conn.execute(
            sa.select(links.c.status, sa.func.count())
            .where(links.c.request_id == request_id)
            .group_by(links.c.status)
        )
    ).all()
    urls = (
        await conn.execute(
            sa.select(
                sa.func.count(sa.func.nullif(links.c.profile_url, "")),
                sa.func.count(sa.func.nullif(links.c.post_url, "")),
            ).where(links.c.request_id == request_id)
        )
    ).one()
    return rows, urls


async def cancel_where(conn: AsyncConnection, condition: Any, now: datetime) -> list[AnyRow]:
    """Links matching ``condition`` (and not canceled) -> canceled; each as it was before."""
    query = sa.select(links.c.id, links.c.server_id, links.c.status).where(
        condition, links.c.status != LinkStatus.CANCELED
    )
    query = query.with_for_update()
    rows = (await conn.execute(query)).all()
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 5000):
        await conn.execute(
            links.update()
            .where(links.c.id.in_(ids[start : start + 5000]))
            .values(status=LinkStatus.CANCELED, updated_at=now)
        )
    return list(rows)


def in_flight_deltas(rows: Sequence[Row[Any]]) -> list[tuple[uuid.UUID | None, int]]:
    """-1 per row that held a slot, keyed by server, for ``servers.add_tasks``."""
    return [(r.server_id, -1) for r in rows if r.status in IN_FLIGHT]
