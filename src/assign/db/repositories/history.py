"""SQL of the history tables (attempts, throughput, link_counts), which triggers on ``links``
write (migrations 0005 and 0011): here they are only read and pruned."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.db.tables import (
    REMAINING_LINKS,
    attempts,
    link_counts,
    links,
    requests,
    servers,
    throughput,
)
from assign.db.views import AnyRow
from assign.domain.states import ASSIGN_SERVICE, WORKING

ATTEMPT_FIELDS = (
    "number", "phase", "server_id", "started_at", "finished_at", "outcome", "error",
    "profile_url", "post_url",
)  # fmt: skip


async def attempts_of(conn: AsyncConnection, link: AnyRow) -> list[dict[str, Any]]:
    """The link's attempts, oldest first, as API items: the finished ones stored, then, while
    the link runs or connects, its current one, which is the link itself (migration 0011)."""
    rows = await conn.execute(
        sa.select(*(attempts.c[name] for name in ATTEMPT_FIELDS))
        .where(attempts.c.link_id == link.id)
        .order_by(attempts.c.number)
    )
    found = [dict(r._mapping) for r in rows]
    if link.status in WORKING:
        found.append(current_attempt(link, after=found[-1]["number"] if found else 0))
    return found


def current_attempt(link: AnyRow, *, after: int) -> dict[str, Any]:
    """The attempt a running or connecting link is making, numbered after its last stored one:
    on its server, in its phase, since its claim; no end, outcome, error or URL yet."""
    return {
        **dict.fromkeys(ATTEMPT_FIELDS),
        "number": after + 1,
        "phase": link.phase,
        "server_id": link.server_id,
        "started_at": link.started_at or link.updated_at,
    }


async def throughput_since(
    conn: AsyncConnection, *, kind: str, since: datetime, key: uuid.UUID | None = None
) -> list[AnyRow]:
    """(minute, key, completed, failed) of one kind from ``since`` on, by minute then key
    (the rows of differences summed)."""
    query = sa.select(
        throughput.c.minute,
        throughput.c.key,
        sa.func.sum(throughput.c.completed).label("completed"),
        sa.func.sum(throughput.c.failed).label("failed"),
    ).where(throughput.c.kind == kind, throughput.c.minute >= since)
    if key is not None:
        query = query.where(throughput.c.key == key)
    query = query.group_by(throughput.c.minute, throughput.c.key)
    return list((await conn.execute(query.order_by(throughput.c.minute, throughput.c.key))).all())


async def totals_by_minute(conn: AsyncConnection, *, kind: str, since: datetime) -> list[AnyRow]:
    """(minute, completed, failed) summed over every key of one kind, from ``since`` on, by
    minute: one row a minute, whatever the number of servers or requests."""
    return await _totals(conn, throughput.c.minute, kind=kind, since=since)


async def totals_by_key(conn: AsyncConnection, *, kind: str, since: datetime) -> list[AnyRow]:
    """(key, completed, failed) of each key of one kind from ``since`` on: one row a key."""
    return await _totals(conn, throughput.c.key, kind=kind, since=since)


async def _totals(
    conn: AsyncConnection, by: sa.Column[Any], *, kind: str, since: datetime
) -> list[AnyRow]:
    """(``by``, completed, failed) of one kind from ``since`` on, summed by ``by``, in its
    order."""
    query = (
        sa.select(
            by,
            sa.func.sum(throughput.c.completed).label("completed"),
            sa.func.sum(throughput.c.failed).label("failed"),
        )
        .where(throughput.c.kind == kind, throughput.c.minute >= since)
        .group_by(by)
        .order_by(by)
    )
    return list((await conn.execute(query)).all())


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
    total = sa.func.sum(link_counts.c.n)
    rows = await conn.execute(
        sa.select(link_counts.c.request_id, link_counts.c.status, total)
        .where(link_counts.c.request_id.in_(list(request_ids)))
        .group_by(link_counts.c.request_id, link_counts.c.status)
        .having(total != 0)
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


#: fold a key's rows of differences into one (PostgreSQL: one statement, so rows appended
#: meanwhile by other transactions, invisible to it, are left alone)
_COMPACT_COUNTS = """
WITH gone AS (
  DELETE FROM link_counts l
  USING (SELECT request_id, status FROM link_counts GROUP BY request_id, status
         HAVING count(*) > 1 OR sum(n) = 0) d
  WHERE l.request_id = d.request_id AND l.status = d.status
  RETURNING l.request_id, l.status, l.n)
INSERT INTO link_counts (request_id, status, n)
SELECT request_id, status, sum(n) FROM gone GROUP BY request_id, status HAVING sum(n) <> 0
"""
_COMPACT_THROUGHPUT = """
WITH gone AS (
  DELETE FROM throughput t
  USING (SELECT kind, minute, key FROM throughput
         WHERE kind IN ('request', 'server') AND minute >= :since
         GROUP BY kind, minute, key HAVING count(*) > 1) d
  WHERE t.kind = d.kind AND t.minute = d.minute AND t.key = d.key
  RETURNING t.kind, t.minute, t.key, t.completed, t.failed)
INSERT INTO throughput (kind, minute, key, completed, failed)
SELECT kind, minute, key, sum(completed), sum(failed) FROM gone GROUP BY kind, minute, key
"""


async def compact_counts(conn: AsyncConnection) -> int:
    """Fold each (request, status)'s rows of ``link_counts`` into one, dropping those at 0;
    how many keys were folded or dropped."""
    if dialect.writable_ctes(conn):
        result = await conn.execute(sa.text(_COMPACT_COUNTS))
        return int(result.rowcount or 0)
    # SQLite: the single writer holds the database for the whole transaction
    total = sa.func.sum(link_counts.c.n)
    keys = (
        sa.select(link_counts.c.request_id, link_counts.c.status)
        .group_by(link_counts.c.request_id, link_counts.c.status)
        .having(sa.or_(sa.func.count() > 1, total == 0))
    )
    sums = (
        await conn.execute(
            sa.select(link_counts.c.request_id, link_counts.c.status, total)
            .group_by(link_counts.c.request_id, link_counts.c.status)
            .having(sa.or_(sa.func.count() > 1, total == 0))
        )
    ).all()
    if not sums:
        return 0
    await conn.execute(
        link_counts.delete().where(
            sa.tuple_(link_counts.c.request_id, link_counts.c.status).in_(keys)
        )
    )
    kept = [{"request_id": r[0], "status": r[1], "n": int(r[2])} for r in sums if r[2]]
    if kept:
        await conn.execute(link_counts.insert(), kept)
    return len(sums)


async def compact_throughput(conn: AsyncConnection, *, since: datetime) -> int:
    """Fold each (kind, minute, key)'s rows of ``throughput`` from ``since`` on into one; how
    many keys were folded."""
    if dialect.writable_ctes(conn):
        result = await conn.execute(sa.text(_COMPACT_THROUGHPUT), {"since": since})
        return int(result.rowcount or 0)
    cols = (throughput.c.kind, throughput.c.minute, throughput.c.key)
    recent = throughput.c.minute >= since
    several = sa.func.count() > 1
    sums = (
        await conn.execute(
            sa.select(*cols, sa.func.sum(throughput.c.completed), sa.func.sum(throughput.c.failed))
            .where(recent)
            .group_by(*cols)
            .having(several)
        )
    ).all()
    if not sums:
        return 0
    keys = sa.select(*cols).where(recent).group_by(*cols).having(several)
    await conn.execute(throughput.delete().where(sa.tuple_(*cols).in_(keys)))
    await conn.execute(
        throughput.insert(),
        [
            {"kind": r[0], "minute": r[1], "key": r[2], "completed": r[3], "failed": r[4]}
            for r in sums
        ],
    )
    return len(sums)


async def account_samples(
    conn: AsyncConnection, *, request_ids: Sequence[uuid.UUID], size: int
) -> dict[uuid.UUID, tuple[int, int, int]]:
    """{request id: (links, links with an email, distinct emails)} among up to ``size`` of
    each request's links still to be done: one range of ``ix_links_remaining_request_id`` per
    request, ``size`` entries at most, which hold the email (PostgreSQL: no table page read)."""
    out: dict[uuid.UUID, tuple[int, int, int]] = {}
    if not request_ids:
        return out
    if dialect.bulk_arrays(conn):
        # the statuses written out, not bound: a generic plan must still see the index's predicate
        rows = await conn.execute(
            sa.text(
                "SELECT r.id, s.n, s.with_email, s.accounts "
                "FROM unnest(CAST(:ids AS uuid[])) AS r(id) CROSS JOIN LATERAL ("
                "  SELECT count(*) AS n, count(p.email) AS with_email,"
                "         count(DISTINCT p.email) AS accounts"
                "  FROM (SELECT l.email FROM links l"
                f"        WHERE l.request_id = r.id AND l.{REMAINING_LINKS}"
                f"        LIMIT {int(size)}) p) s"
            ),
            {"ids": list(request_ids)},
        )
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    for request_id in request_ids:
        picked = (
            sa.select(links.c.email)
            .where(links.c.request_id == request_id, sa.text(REMAINING_LINKS))
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


async def finished_since(conn: AsyncConnection, *, since: datetime) -> tuple[int, int]:
    """(completed, failed) of the whole fleet from ``since`` on (request rows: each link
    finishes on exactly one of them)."""
    row = (
        await conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(throughput.c.completed), 0),
                sa.func.coalesce(sa.func.sum(throughput.c.failed), 0),
            ).where(throughput.c.kind == "request", throughput.c.minute >= since)
        )
    ).one()
    return int(row[0]), int(row[1])


async def servers_by_status(conn: AsyncConnection) -> dict[str, int]:
    """{status: tool servers} (assign servers left out)."""
    rows = await conn.execute(
        sa.select(servers.c.status, sa.func.count())
        .where(servers.c.service != ASSIGN_SERVICE)
        .group_by(servers.c.status)
    )
    return {status: int(n) for status, n in rows}


async def requests_by_status(conn: AsyncConnection) -> dict[str, int]:
    """{status: requests} (an index-only count of ``ix_requests_status_priority_created_at``)."""
    rows = await conn.execute(
        sa.select(requests.c.status, sa.func.count()).group_by(requests.c.status)
    )
    return {status: int(n) for status, n in rows}


async def server_names(conn: AsyncConnection, server_ids: Sequence[uuid.UUID]) -> dict[Any, str]:
    """{server id: name} of the given servers."""
    if not server_ids:
        return {}
    rows = await conn.execute(
        sa.select(servers.c.id, servers.c.name).where(servers.c.id.in_(list(server_ids)))
    )
    return {r.id: r.name for r in rows}


async def set_attempt_urls(
    conn: AsyncConnection, urls: Sequence[tuple[uuid.UUID, str | None, str | None]]
) -> None:
    """Record (link id, profile_url, post_url) on each link's last attempt: for results whose
    URLs the link itself does not keep (a failed result); run after the result's update, in its
    transaction."""
    if not urls:
        return
    last = (
        sa.select(sa.func.max(attempts.c.number))
        .where(attempts.c.link_id == sa.bindparam("b_link"))
        .scalar_subquery()
    )
    await conn.execute(
        attempts.update()
        .where(attempts.c.link_id == sa.bindparam("b_link"), attempts.c.number == last)
        .values(profile_url=sa.bindparam("b_profile"), post_url=sa.bindparam("b_post"))
        .execution_options(synchronize_session=False),
        [{"b_link": link_id, "b_profile": p, "b_post": q} for link_id, p, q in urls],
    )
