"""Use cases of links chosen by a filter (or by id) on the console: a keyset page, a count,
and bulk retry and cancel, each one set-based statement in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import views
from assign.db.repositories import history as history_repo
from assign.db.repositories import link_sets as repo
from assign.db.repositories import servers as servers_repo
from assign.domain.filters import LinkFilter
from assign.domain.states import IN_FLIGHT
from assign.services import wake
from assign.services.context import Context


async def list_page(
    ctx: Context, *, match: LinkFilter, after: uuid.UUID | None, limit: int
) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """A page of links matching the filter, and the ``after`` of the next page (None: last)."""
    async with ctx.db.read() as conn:
        rows = await repo.page(conn, match, after=after, limit=limit + 1)
    items = [views.link(r) for r in rows[:limit]]
    return items, (rows[limit - 1].id if len(rows) > limit else None)


async def count(
    ctx: Context, *, match: LinkFilter | None, link_ids: Sequence[uuid.UUID] | None
) -> int:
    """How many links a bulk action would be offered: those chosen, or all matching the filter.

    A filter of statuses and request alone is answered from the counts the transitions keep
    (``link_counts``); any other filter counts its links.
    """
    async with ctx.db.read() as conn:
        if link_ids is None and match is not None and _by_counts(match):
            if match.request_id is None:
                by_status = await history_repo.link_totals(conn)
            else:
                found = await history_repo.link_counts_of(conn, [match.request_id])
                by_status = found[match.request_id]
            return sum(n for s, n in by_status.items() if not match.statuses or s in match.statuses)
        return await repo.count(conn, repo.chosen(match, link_ids))


def _by_counts(match: LinkFilter) -> bool:
    return match == LinkFilter(statuses=match.statuses, request_id=match.request_id)


class BulkAction(Protocol):
    """A bulk action of the console over the links chosen by a filter or by id; how many it
    changed."""

    async def __call__(
        self, ctx: Context, *, match: LinkFilter | None, link_ids: Sequence[uuid.UUID] | None
    ) -> int: ...


def _bulk_action(
    act: Callable[[Context, AsyncConnection, Any, datetime], Awaitable[int]],
) -> BulkAction:
    """The bulk action that runs ``act(ctx, conn, chosen, now)`` in one transaction, ``chosen``
    the condition of the links picked."""

    async def run(
        ctx: Context, *, match: LinkFilter | None, link_ids: Sequence[uuid.UUID] | None
    ) -> int:
        chosen = repo.chosen(match, link_ids)
        now = ctx.clock.now()
        return await ctx.db.run(lambda conn: act(ctx, conn, chosen, now))

    run.__doc__ = act.__doc__
    return run


async def _retry(ctx: Context, conn: AsyncConnection, chosen: Any, now: datetime) -> int:
    """Retry the retryable failed links (of open requests) among those chosen; how many."""
    moved = await repo.retry(conn, chosen, now)
    if moved:
        await wake.notify(ctx, conn)
    return moved


async def _cancel(ctx: Context, conn: AsyncConnection, chosen: Any, now: datetime) -> int:
    """Cancel the unfinished links among those chosen, freeing their slots; how many."""
    groups = await repo.cancel(conn, chosen, now)
    # links first, then servers: the project's lock order
    await servers_repo.add_tasks(
        conn, [(server_id, -n) for server_id, status, n in groups if status in IN_FLIGHT]
    )
    return sum(n for _, _, n in groups)


retry = _bulk_action(_retry)
cancel = _bulk_action(_cancel)
