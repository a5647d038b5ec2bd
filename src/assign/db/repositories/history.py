"""SQL of the history tables (attempts, throughput, link_counts), which triggers on ``links``
write (migration 0005): here they are only read and pruned."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.db.tables import attempts, link_counts, links, throughput
from assign.db.views import AnyRow

ATTEMPT_FIELDS = (
    "number", "phase", "server_id", "started_at", "finished_at", "outcome", "error",
    "profile_url", "post_url",
)  # fmt: skip


async def attempts_of(conn: AsyncConnection, link_id: uuid.UUID) -> list[dict[str, Any]]:
    """The link's attempts, oldest first, as API items."""
    rows = await conn.execute(
        sa.select(*(attempts.c[name] for name in ATTEMPT_FIELDS))
        .where(attempts.c.link_id == link_id)
        .order_by(attempts.c.number)
    )
    return [dict(r._mapping) for r in rows]


async def throughput_since(
    conn: AsyncConnection, *, kind: str, since: datetime, key: uuid.UUID | None = None
) -> list[AnyRow]:
    """(minute, key, completed, failed) of one kind from ``since`` on, by minute then key."""
    query = sa.select(
        throughput.c.minute, throughput.c.key, throughput.c.completed, throughput.c.failed
    ).where(throughput.c.kind == kind, throughput.c.minute >= since)
    if key is not None:
        query = query.where(throughput.c.key == key)
    return list((await conn.execute(query.order_by(throughput.c.minute, throughput.c.key))).all())


async def completed_since(
    conn: AsyncConnection, *, kind: str, keys: Sequence[uuid.UUID], since: datetime
) -> dict[uuid.UUID, int]:
    """{key: completions from ``since`` on} of the given keys of one kind."""
    if not keys:
        return {}
    rows = await conn.execute(
        sa.select(throughput.c.key, sa.func.sum(throughput.c.completed))
        .where(
            throughput.c.kind == kind,
            throughput.c.minute >= since,
            throughput.c.key.in_(list(keys)),
        )
        .group_by(throughput.c.key)
    )
    return {r[0]: int(r[1] or 0) for r in rows}


async def link_totals(conn: AsyncConnection) -> dict[str, int]:
    """{status: links} over the whole fleet (statuses with none left out)."""
    rows = await conn.execute(
        sa.select(link_counts.c.status, sa.func.sum(link_counts.c.n)).group_by(link_counts.c.status)
    )
    return {status: int(n) for status, n in rows if n}


async def link_counts_of(
    conn: AsyncConnection, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """{request id: {status: links}} of the given requests (statuses with none left out)."""
    if not request_ids:
        return {}
    rows = await conn.execute(
        sa.select(link_counts.c.request_id, link_counts.c.status, link_counts.c.n).where(
            link_counts.c.request_id.in_(list(request_ids)), link_counts.c.n != 0
        )
    )
    out: dict[uuid.UUID, dict[str, int]] = {request_id: {} for request_id in request_ids}
    for request_id, status, n in rows:
        out[request_id][status] = int(n)
    return out


async def prune_attempts(conn: AsyncConnection, *, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` finished attempts started before ``before``; how many."""
    oldest = (
        sa.select(attempts.c.link_id, attempts.c.number)
        .where(attempts.c.started_at < before, attempts.c.finished_at.is_not(None))
        .limit(batch)
    )
    result = await conn.execute(
        attempts.delete().where(sa.tuple_(attempts.c.link_id, attempts.c.number).in_(oldest))
    )
    return int(result.rowcount or 0)


async def prune_throughput(conn: AsyncConnection, *, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` rows of each kind for minutes before ``before``; how many."""
    deleted = 0
    for kind in ("request", "server"):
        oldest = (
            sa.select(throughput.c.kind, throughput.c.minute, throughput.c.key)
            .where(throughput.c.kind == kind, throughput.c.minute < before)
            .limit(batch)
        )
        result = await conn.execute(
            throughput.delete().where(
                sa.tuple_(throughput.c.kind, throughput.c.minute, throughput.c.key).in_(oldest)
            )
        )
        deleted += int(result.rowcount or 0)
    return deleted


async def prune_empty_counts(conn: AsyncConnection) -> int:
    """Delete the link_counts rows that hold 0 (a request's status it no longer has)."""
    result = await conn.execute(link_counts.delete().where(link_counts.c.n == 0))
    return int(result.rowcount or 0)


async def account_samples(
    conn: AsyncConnection, *, request_ids: Sequence[uuid.UUID], statuses: Sequence[str], size: int
) -> dict[uuid.UUID, tuple[int, int, int]]:
    """{request id: (links, links with an email, distinct emails)} among up to
    ``size`` of each request's links in ``statuses``: one index range of (request_id, status)
    per request, ``size`` rows at most."""
    out: dict[uuid.UUID, tuple[int, int, int]] = {}
    if not request_ids:
        return out
    if dialect.bulk_arrays(conn):
        rows = await conn.execute(
            sa.text(
                "SELECT r.id, count(s.*), count(s.email), count(DISTINCT s.email) "
                "FROM unnest(CAST(:ids AS uuid[])) AS r(id) CROSS JOIN LATERAL ("
                "  SELECT l.email FROM links l WHERE l.request_id = r.id "
                "  AND l.status = ANY(CAST(:statuses AS text[])) "
                f"  LIMIT {int(size)}) s GROUP BY r.id"
            ),
            {"ids": list(request_ids), "statuses": list(statuses)},
        )
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    for request_id in request_ids:
        picked = (
            sa.select(links.c.email)
            .where(links.c.request_id == request_id, links.c.status.in_(list(statuses)))
            .limit(size)
            .subquery()
        )
        row = (
            await conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(picked.c.email),
                    sa.func.count(sa.distinct(picked.c.email)),
                )
            )
        ).one()
        out[request_id] = (int(row[0]), int(row[1]), int(row[2]))
    return out
