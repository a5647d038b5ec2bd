"""Retention: the leader moves the links of long-closed requests out of the hot table.

A request closed more than ``ASSIGN_ARCHIVE_AFTER_DAYS`` ago (30; 0 keeps everything) has its
finished links, unchanged for as long, moved to ``links_archive`` without their passwords, one
batch a tick, in one transaction each: the rows are locked (SKIP LOCKED), copied, deleted, their
counts put back into ``link_counts``, and the request marked archived once none is left. Every
answer that counts a request's or an account's links reads the archive too, so they answer the
same after the move (tests/services/test_retention.py).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import archive as repo
from assign.domain.retention import archive_before
from assign.services.context import Context

log = logging.getLogger("assign.dispatcher")

#: links moved per tick (one statement each for copy and delete)
BATCH = 2000
#: requests looked at per tick, oldest closed first
REQUESTS_PER_BATCH = 50


async def archive_closed(ctx: Context, *, now: datetime, batch: int = BATCH) -> int:
    """Move up to ``batch`` links of long-closed requests to the archive; how many moved."""
    before = archive_before(now, ctx.settings.archive_after_days)
    if before is None:
        return 0

    async def work(conn: AsyncConnection) -> int:
        request_ids = await repo.requests_due(conn, before=before, limit=REQUESTS_PER_BATCH)
        if not request_ids:
            return 0
        link_ids = await repo.pick_links(conn, request_ids, before=before, limit=batch)
        if link_ids:
            await repo.keep_counted(conn, await repo.move_links(conn, link_ids, now))
        await repo.mark_archived(conn, request_ids, now)
        return len(link_ids)

    moved = await ctx.db.run(work)
    if moved:
        log.info("links archived", extra={"links": moved})
    return moved
