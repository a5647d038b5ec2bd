"""The workloads of ``bench/history_cost.py``, each timed in a transaction that is then rolled
back, so every round starts from the same rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from assign.db.repositories import claims as claims_repo
from assign.db.repositories import links as links_repo
from assign.dispatcher import steps
from assign.services.context import Context


class Rollback(Exception):
    """Raised at the end of a measured transaction so that nothing of it stays."""


async def begin(conn: Any) -> None:
    """Make SQLAlchemy send its BEGIN now (it does so on its first statement): statements sent
    on the driver's connection before it would run outside the transaction and stay."""
    await conn.exec_driver_sql("SELECT 1")


async def in_rollback(
    ctx: Context,
    work: Callable[[Any], Awaitable[None]],
    prepare: Callable[[Any], Awaitable[None]] | None = None,
) -> float:
    """Seconds ``work(conn)`` took inside a transaction that is then rolled back (after
    ``prepare(conn)``, untimed, in the same transaction)."""
    elapsed = 0.0
    try:
        async with ctx.db.transaction() as conn:
            await begin(conn)
            if prepare is not None:
                await prepare(conn)
            started = time.perf_counter()
            await work(conn)
            elapsed = time.perf_counter() - started
            raise Rollback
    except Rollback:
        pass
    return elapsed


class Fixture:
    def __init__(self, request_id: uuid.UUID, claimer: uuid.UUID, reporter: uuid.UUID) -> None:
        self.request_id = request_id
        self.claimer = claimer
        self.reporter = reporter
        self.running: list[uuid.UUID] = []
        self.spread = reporter
        self.running_spread: list[uuid.UUID] = []
        # the committed workloads' servers (history_committed.py), and the links last claimed
        self.flow = reporter
        self.flow_spread = reporter
        self.claimed: list[uuid.UUID] = []


async def bulk_insert(ctx: Context, fx: Fixture) -> float:
    now = datetime.now(UTC)
    ids = links_repo.new_ids(5000)
    rows = [
        (i, fx.request_id, "entity", None, None, f"site{n % 200}", f"account{n % 5000}@example.com",
         "user", b"\x01" * 60, None, "pending", "create", 0, 0, 3, None, None, now, now)
        for n, i in enumerate(ids)
    ]  # fmt: skip

    async def work(conn: Any) -> None:
        await links_repo.insert_many(conn, rows)

    return await in_rollback(ctx, work)


async def claim(ctx: Context, fx: Fixture) -> float:
    async def work(conn: Any) -> None:
        now = datetime.now(UTC)
        rows = await claims_repo.claim_links(
            conn, server_id=fx.claimer, source="queued", limit=1000, now=now
        )
        assert rows

    return await in_rollback(ctx, work)


RESULTS = """
UPDATE links SET status = v.status, error = v.error, profile_url = v.profile_url,
       completed_at = CASE WHEN v.status = 'completed' THEN $3 ELSE links.completed_at END,
       updated_at = $3
FROM unnest($1::uuid[], $2::text[], $4::text[], $5::text[]) AS v(id, status, error, profile_url)
WHERE links.id = v.id AND links.server_id = $6 AND links.status IN ('connecting', 'running')
"""


async def bulk_results(ctx: Context, fx: Fixture) -> float:
    return await _results(ctx, fx.reporter, fx.running)


async def bulk_results_spread(ctx: Context, fx: Fixture) -> float:
    return await _results(ctx, fx.spread, fx.running_spread)


async def _results(ctx: Context, server_id: uuid.UUID, ids: list[uuid.UUID]) -> float:
    statuses = ["failed" if i % 10 == 0 else "completed" for i in range(len(ids))]
    errors = ["captcha" if s == "failed" else None for s in statuses]
    urls = [f"https://p.example/{i}" for i in range(len(ids))]

    async def work(conn: Any) -> None:
        raw = (await conn.get_raw_connection()).driver_connection
        now = datetime.now(UTC)
        result = await raw.execute(RESULTS, ids, statuses, now, errors, urls, server_id)
        assert result == f"UPDATE {len(ids)}", result
        await raw.execute(
            "UPDATE servers SET active_tasks = active_tasks - $1, last_active = $2 WHERE id = $3",
            len(ids),
            now,
            server_id,
        )

    return await in_rollback(ctx, work)


async def tick_placing(ctx: Context, fx: Fixture) -> float:
    async def work(conn: Any) -> None:
        report = await steps.tick(ctx)
        assert report.assigned == 1000, report

    return await _with_slots(ctx, 20, work)


async def tick_idle(ctx: Context, fx: Fixture) -> float:
    async def work(conn: Any) -> None:
        report = await steps.tick(ctx)
        assert report.assigned == 0, report

    return await _with_slots(ctx, 0, work)


async def _with_slots(ctx: Context, free: int, work: Callable[[Any], Awaitable[None]]) -> float:
    """``work`` timed in a rolled-back transaction where every server has ``free`` free slots."""

    async def slots(conn: Any) -> None:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute(
            "UPDATE servers SET max_threads = active_tasks + $1 WHERE service = 'tool'", free
        )

    return await in_rollback(ctx, work, slots)


WORKLOADS: dict[str, Callable[[Context, Fixture], Awaitable[float]]] = {
    "bulk insert, 5,000 links": bulk_insert,
    "claim, 1,000 links of 5 requests": claim,
    "bulk results, 1,000 links of 5 requests": bulk_results,
    "bulk results, 1,000 links of 280 requests": bulk_results_spread,
    "tick, 1,000 placed": tick_placing,
    "tick, idle": tick_idle,
}
