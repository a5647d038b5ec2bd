"""The leader keeps PostgreSQL's statistics of ``links`` current between autovacuum's visits.

The planner chooses each plan from the table's statistics, which ``ANALYZE`` samples and
autovacuum refreshes once ``links`` has changed by 1 % (migration 0007), but only when it next
looks, up to ``autovacuum_naptime`` (a minute by default) later. A bulk create of thousands of
links into a small or new table leaves the statistics saying there are no pending links, and the
dispatcher's pending window is then planned as a scan of every pending link, each checked
against its request, then sorted (35-160 ms a tick with 20,000 pending, against 1-2 ms read in
queue order). So each full tick the leader looks at how much of ``links`` changed since its last
analysis and, past a tenth of the table (plus a few hundred rows), analyzes it, at most once
every ``ANALYZE_SECONDS``: a sample of 30,000 rows, some tens of milliseconds.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.services.context import Context

#: the shortest time between two analyses by the leader
ANALYZE_SECONDS = 10.0
#: rows changed since the last analysis, beyond which it is redone: at least this many...
AT_LEAST = 500
#: ...plus this fraction of the table's rows at that analysis
FRACTION = 0.1


async def refresh(ctx: Context) -> bool:
    """Analyze ``links`` if its statistics are stale (PostgreSQL); whether it did."""
    if not ctx.db.keeps_planner_statistics:
        return False

    async def work(conn: AsyncConnection) -> bool:
        if not await dialect.stale_statistics(conn, "links", at_least=AT_LEAST, fraction=FRACTION):
            return False
        await dialect.analyze(conn, "links")
        return True

    return await ctx.db.run(work)
