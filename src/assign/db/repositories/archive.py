"""SQL of retention: moving a closed request's links to ``links_archive`` and reading them back."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import visitors

from assign.db.tables import ARCHIVED_COLUMNS, link_counts, links, links_archive, requests
from assign.domain.retention import ARCHIVABLE
from assign.domain.states import CLOSED


def on_archive(expression: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``expression`` (written on ``links``) with every column of ``links`` replaced by the
    archive's column of that name, so one rule serves both tables."""

    def replace(element: Any, **_: Any) -> Any:
        if isinstance(element, sa.Column) and element.table is links:
            return links_archive.c[element.name]
        return None

    return visitors.replacement_traverse(expression, {}, replace)


async def requests_due(conn: AsyncConnection, *, before: datetime, limit: int) -> list[uuid.UUID]:
    """Ids of closed requests, closed before ``before`` and not archived yet, oldest first."""
    rows = await conn.execute(
        sa.select(requests.c.id)
        .where(
            requests.c.archived_at.is_(None),
            requests.c.completed_at.is_not(None),
            requests.c.completed_at < before,
            requests.c.status.in_(sorted(CLOSED)),
        )
        .order_by(requests.c.completed_at)
        .limit(limit)
    )
    return [r.id for r in rows]


async def pick_links(
    conn: AsyncConnection,
    request_ids: Sequence[uuid.UUID],
    *,
    before: datetime,
    limit: int,
) -> list[uuid.UUID]:
    """Ids of up to ``limit`` finished links of these requests unchanged since ``before``,
    locked (on PostgreSQL, skipping those another transaction holds)."""
    query = (
        sa.select(links.c.id)
        .where(
            links.c.request_id.in_(list(request_ids)),
            links.c.status.in_(sorted(ARCHIVABLE)),
            links.c.updated_at < before,
        )
        .order_by(links.c.id)
        .limit(limit)
    )
    query = query.with_for_update(skip_locked=True)
    return [r.id for r in await conn.execute(query)]


async def move_links(
    conn: AsyncConnection, link_ids: Sequence[uuid.UUID], now: datetime
) -> list[tuple[uuid.UUID, str, int]]:
    """Copy these links (without password) to the archive and delete them from ``links``;
    their (request id, status, count)."""
    ids = list(link_ids)
    columns = [links.c[name] for name in ARCHIVED_COLUMNS]
    await conn.execute(
        links_archive.insert().from_select(
            [*ARCHIVED_COLUMNS, "archived_at"],
            sa.select(*columns, sa.literal(now, links_archive.c.archived_at.type)).where(
                links.c.id.in_(ids)
            ),
        )
    )
    counts = await conn.execute(
        sa.select(links.c.request_id, links.c.status, sa.func.count())
        .where(links.c.id.in_(ids))
        .group_by(links.c.request_id, links.c.status)
    )
    moved = [(r[0], r[1], int(r[2])) for r in counts]
    await conn.execute(links.delete().where(links.c.id.in_(ids)))
    return moved


async def keep_counted(conn: AsyncConnection, moved: Sequence[tuple[uuid.UUID, str, int]]) -> None:
    """Add the moved links back to ``link_counts`` (rows of differences; its delete trigger
    subtracted them): a request's counts include its archived links."""
    if moved:
        await conn.execute(
            link_counts.insert(),
            [{"request_id": r, "status": s, "n": n} for r, s, n in sorted(moved)],
        )


async def mark_archived(
    conn: AsyncConnection, request_ids: Sequence[uuid.UUID], now: datetime
) -> int:
    """Mark archived those of these requests with no link left in ``links``; how many."""
    left = sa.select(links.c.id).where(links.c.request_id == requests.c.id).exists()
    result = await conn.execute(
        requests.update().where(requests.c.id.in_(list(request_ids)), ~left).values(archived_at=now)
    )
    return int(result.rowcount or 0)


async def archived_counts(
    conn: AsyncConnection, request_id: uuid.UUID
) -> tuple[Sequence[Any], Any]:
    """((status, count) rows, (profile_count, post_count)) of one request's archived links."""
    a = links_archive.c
    rows = (
        await conn.execute(
            sa.select(a.status, sa.func.count())
            .where(a.request_id == request_id)
            .group_by(a.status)
        )
    ).all()
    urls = (
        await conn.execute(
            sa.select(
                sa.func.count(sa.func.nullif(a.profile_url, "")),
                sa.func.count(sa.func.nullif(a.post_url, "")),
            ).where(a.request_id == request_id)
        )
    ).one()
    return rows, urls


def archived_of_request(request_id: uuid.UUID) -> sa.Select[Any]:
    """The archived links of a request, oldest first (for export)."""
    return (
        sa.select(links_archive)
        .where(links_archive.c.request_id == request_id)
        .order_by(links_archive.c.created_at, links_archive.c.id)
    )


async def archived_account_stats(
    conn: AsyncConnection, *, email: str, request_id: uuid.UUID | None, day_start: datetime
) -> dict[str, Any]:
    """today_count, total_completed, last_post_at, request_completed of an email's archived
    links (none of them is pending), by the rules of ``links.account_stats``."""
    from assign.db import rules

    a = links_archive.c
    done = on_archive(rules.CREATE_COMPLETED)
    in_request = a.request_id == request_id if request_id else sa.false()
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(a.completed_at >= day_start).label("today_count"),
                sa.func.count().filter(done).label("total_completed"),
                sa.func.max(a.completed_at).label("last_post_at"),
                sa.func.count().filter(done, in_request).label("request_completed"),
            ).where(a.email == email)
        )
    ).one()
    return dict(row._mapping)
