"""SQL for links chosen by a filter: the condition, a keyset page, a count, and set-based
retry and cancel (statements over the whole set, never a loop over single links)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.db.repositories import links as links_repo
from assign.db.tables import links
from assign.domain.filters import LinkFilter
from assign.domain.states import LinkStatus

ALL_STATUSES = tuple(sorted(s.value for s in LinkStatus))
#: what an operator's cancel applies to: every link not done with (completed work is kept)
CANCELABLE = tuple(
    sorted(s.value for s in LinkStatus if s not in (LinkStatus.COMPLETED, LinkStatus.CANCELED))
)


def condition(match: LinkFilter) -> Any:
    """The WHERE clause of ``match`` (true for an empty filter)."""
    parts: list[Any] = []
    if match.statuses:
        parts.append(links.c.status.in_(match.statuses))
    for name in ("request_id", "server_id", "email", "site_id", "service_type"):
        value = getattr(match, name)
        if value is not None:
            parts.append(links.c[name] == value)
    if match.error:
        escaped = match.error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        parts.append(links.c.error.ilike(f"%{escaped}%", escape="\\"))
    return sa.and_(sa.true(), *parts)


def chosen(match: LinkFilter | None, link_ids: Sequence[uuid.UUID] | None) -> Any:
    """Links of the filter, or the given ids (each an explicit choice)."""
    if link_ids is not None:
        return links.c.id.in_(sorted(set(link_ids)))
    return condition(match or LinkFilter())


async def page(
    conn: AsyncConnection, match: LinkFilter, *, after: uuid.UUID | None, limit: int
) -> Sequence[Row[Any]]:
    """Up to ``limit`` links of the filter with ids after ``after``, by id (keyset, no OFFSET)."""
    where = condition(match)
    if after is not None:
        where = sa.and_(where, links.c.id > after)
    if match.request_id is None:
        return (
            await conn.execute(sa.select(links).where(where).order_by(links.c.id).limit(limit))
        ).all()
    # one request: each of its (request, status) ranges of ix_links_request_id_status_id is in
    # id order, so the page is the first ``limit`` of their merge; by the primary key the page
    # would read the links of every other request on the way
    ranges = [
        sa.select(links.c.id)
        .where(where, links.c.status == status)
        .order_by(links.c.id)
        .limit(limit)
        .subquery()
        for status in match.statuses or ALL_STATUSES
    ]
    merged = sa.union_all(*(sa.select(r.c.id) for r in ranges)).subquery()
    first = sa.select(merged.c.id).order_by(merged.c.id).limit(limit)
    query = sa.select(links).where(links.c.id.in_(first)).order_by(links.c.id)
    return (await conn.execute(query)).all()


async def count(conn: AsyncConnection, where: Any) -> int:
    """How many links satisfy ``where`` (for a bulk action's confirmation)."""
    return int((await conn.execute(sa.select(sa.func.count()).where(where))).scalar_one())


async def retry(conn: AsyncConnection, where: Any, now: datetime) -> int:
    """Retryable failed links of open requests satisfying ``where`` -> queue; how many (the
    rules and lock order of ``PUT /links/bulk-retry``)."""
    return len(await links_repo.retry_where(conn, where, now=now))


async def cancel(conn: AsyncConnection, where: Any, now: datetime) -> list[tuple[Any, str, int]]:
    """Unfinished links satisfying ``where`` -> canceled in one UPDATE; (server_id, status before,
    how many) for each group of them, for freeing slots.

    PostgreSQL locks and updates them in one statement (the counts come from its RETURNING);
    SQLite, whose writers are serialized (BEGIN IMMEDIATE), counts them first.
    """
    target = sa.and_(where, links.c.status.in_(CANCELABLE))
    values = {"status": LinkStatus.CANCELED, "updated_at": now}
    if dialect.writable_ctes(conn):
        old = (
            sa.select(links.c.id, links.c.status.label("old_status"))
            .where(target)
            .with_for_update()
            .cte("old")
        )
        done = (
            links.update()
            .where(links.c.id == old.c.id)
            .values(**values)
            .returning(links.c.server_id, old.c.old_status)
            .cte("done")
        )
        query = sa.select(done.c.server_id, done.c.old_status, sa.func.count()).group_by(
            done.c.server_id, done.c.old_status
        )
        return [(r[0], r[1], int(r[2])) for r in await conn.execute(query)]
    groups = [
        (r[0], r[1], int(r[2]))
        for r in await conn.execute(
            sa.select(links.c.server_id, links.c.status, sa.func.count())
            .where(target)
            .group_by(links.c.server_id, links.c.status)
        )
    ]
    await conn.execute(links.update().where(target).values(**values))
    return groups
