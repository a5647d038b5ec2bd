"""Use cases of a link's history and the fleet's throughput, read from the tables the
database's triggers keep (see migration 0005); and their pruning by the leader."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from assign.db import views
from assign.db.repositories import history as repo
from assign.db.repositories import links as links_repo
from assign.errors import InvalidInput, NotFound
from assign.services.context import Context

KINDS = ("server", "request")
#: rows deleted per statement when pruning; each batch is its own transaction
PRUNE_BATCH = 5000


async def get_link(ctx: Context, *, link_id: uuid.UUID) -> dict[str, Any]:
    """The link as every link answer shows it, with ``attempts`` oldest first."""
    async with ctx.db.read(snapshot=True) as conn:
        row = await links_repo.get(conn, link_id)
        if row is None:
            raise NotFound("Link not found")
        found = await repo.attempts_of(conn, row)
    return {**views.link(row), "attempts": found}


def minute_of(moment: datetime) -> datetime:
    """The start of ``moment``'s minute."""
    return moment.replace(second=0, microsecond=0)


async def throughput(
    ctx: Context, *, minutes: int, by: str, key: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """Completed and failed per minute and server (or request) over the last ``minutes``
    (the current minute included), oldest minute first; of the one server or request ``key``
    when given."""
    if minutes < 1:
        raise InvalidInput.field("minutes", "must be at least 1")
    # like ``limit``, a longer span is clamped: to the history that is kept
    minutes = min(minutes, max(1, int(ctx.settings.history_days * 24 * 60)))
    if by not in KINDS:
        raise InvalidInput.field("by", f"unknown value {by!r}; allowed: {', '.join(KINDS)}")
    since = minute_of(ctx.clock.now()) - timedelta(minutes=minutes - 1)
    async with ctx.db.read() as conn:
        rows = await repo.throughput_since(conn, kind=by, since=since, key=key)
    return [
        {"minute": r.minute, "key": r.key, "completed": r.completed, "failed": r.failed}
        for r in rows
    ]


async def fleet_minutes(ctx: Context, *, minutes: int) -> list[dict[str, Any]]:
    """Completed and failed per minute over the whole fleet in the last ``minutes`` (the
    current minute included), oldest first; minutes with neither left out."""
    since = minute_of(ctx.clock.now()) - timedelta(minutes=minutes - 1)
    async with ctx.db.read() as conn:
        # every result, stale timeout and lost link happens on a server: by server is all
        rows = await repo.totals_by_minute(conn, kind="server", since=since)
    return [{"minute": r.minute, "completed": r.completed, "failed": r.failed} for r in rows]


async def server_totals(ctx: Context, *, minutes: int) -> dict[uuid.UUID, tuple[int, int]]:
    """{server id: (completed, failed)} over the last ``minutes`` (the current one included)."""
    since = minute_of(ctx.clock.now()) - timedelta(minutes=minutes - 1)
    async with ctx.db.read() as conn:
        rows = await repo.totals_by_key(conn, kind="server", since=since)
    return {r.key: (int(r.completed), int(r.failed)) for r in rows}


async def link_totals(ctx: Context) -> dict[str, int]:
    """Links of the whole fleet by status, from the counts the triggers keep."""
    async with ctx.db.read() as conn:
        return await repo.link_totals(conn)


async def request_link_counts(
    ctx: Context, *, request_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Links of each request by status, from the counts the triggers keep."""
    async with ctx.db.read() as conn:
        return await repo.link_counts_of(conn, request_ids)


async def prune(ctx: Context, *, max_batches: int = 20) -> int:
    """Delete attempts and throughput older than ``ASSIGN_HISTORY_DAYS``, in batches of
    PRUNE_BATCH rows (each its own short transaction), at most ``max_batches`` a call; rows
    deleted."""
    before = ctx.clock.now() - timedelta(days=ctx.settings.history_days)
    deleted = 0
    for prune_step in (repo.prune_attempts, repo.prune_throughput):
        for _ in range(max_batches):
            n = await ctx.db.run(partial(prune_step, before=before, batch=PRUNE_BATCH))
            deleted += n
            if n < PRUNE_BATCH:
                break
    return deleted


#: throughput minutes folded by ``compact``: the recent ones, where the triggers append
COMPACT_MINUTES = 60


async def compact(ctx: Context) -> int:
    """Fold the rows of differences the triggers append to ``link_counts`` and to the recent
    minutes of ``throughput`` (readers sum them either way; this keeps the sums short). Keys
    folded."""
    since = minute_of(ctx.clock.now()) - timedelta(minutes=COMPACT_MINUTES)

    async def work(conn: Any) -> int:
        folded = await repo.compact_counts(conn)
        return folded + await repo.compact_throughput(conn, since=since)

    return await ctx.db.run(work)
