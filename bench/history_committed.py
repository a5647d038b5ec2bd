"""The committed workloads of ``bench/history_cost.py``: the service calls a tool server and the
dispatcher make (a claim, a batch of results, a tick), each in its own committed transaction as
in production, with an untimed set-up before each that gives it the same amount of work.

The rolled-back workloads (``history_workloads.py``) time the bare statements; these time the
operations as their callers see them: the use case, its statements, the history written with
them, and the commit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from history_workloads import Fixture

from assign.dispatcher import steps
from assign.services import claims, tool
from assign.services.context import Context

BATCH = 1000

#: ``BATCH`` pending links -> queued on a server, as the dispatcher places them; its slots
#: are exactly its in-flight links, so a claim takes these and starts no connect link (the
#: generated links' passwords are not encrypted with a real key: these are)
QUEUE = """
WITH picked AS (
  SELECT id FROM links
  WHERE status = 'pending' AND ($2::uuid[] IS NULL OR request_id = ANY($2::uuid[]))
  ORDER BY id LIMIT $3 FOR UPDATE
)
UPDATE links SET status = 'queued', server_id = $1, assigned_at = now(), updated_at = now()
FROM picked WHERE links.id = picked.id
"""
PASSWORDS = """
UPDATE links SET password_enc = $2 WHERE server_id = $1 AND status IN ('queued', 'connect')
"""
SLOTS = """
UPDATE servers SET active_tasks = c.n, max_threads = c.n, last_health_check = now()
FROM (SELECT count(*) AS n FROM links
      WHERE server_id = $1 AND status IN ('queued', 'running', 'connecting')) c
WHERE id = $1
"""
#: the requests with the most pending links (a server's work comes from a few of them)
BUSIEST = """
SELECT request_id FROM links WHERE status = 'pending'
GROUP BY request_id ORDER BY count(*) DESC LIMIT $1
"""


async def _raw(ctx: Context, statement: str, *args: Any) -> Any:
    """``statement`` run and committed on its own (untimed set-up)."""
    async with ctx.db.transaction() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        return await raw.fetch(statement, *args)


async def _queue(ctx: Context, server_id: uuid.UUID, spread: bool) -> None:
    """``BATCH`` pending links queued on ``server_id``: of the 5 busiest requests, or of any."""
    requests = None if spread else [r[0] for r in await _raw(ctx, BUSIEST, 5)]
    await _raw(ctx, QUEUE, server_id, requests, BATCH)
    await _raw(ctx, PASSWORDS, server_id, ctx.cipher.encrypt("secret"))
    await _raw(ctx, SLOTS, server_id)


async def _claim(ctx: Context, server_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await claims.claim(ctx, server_id=server_id, limit=BATCH)
    assert len(rows) == BATCH, len(rows)
    return [row["id"] for row in rows]


async def _report(ctx: Context, server_id: uuid.UUID, ids: list[uuid.UUID]) -> float:
    reports = [
        tool.Report(i, "failed", error="captcha")
        if n % 10 == 0
        else tool.Report(i, "completed", profile_url=f"https://p.example/{n}")
        for n, i in enumerate(ids)
    ]
    started = time.perf_counter()
    applied, answers = await tool.report_results(ctx, server_id=server_id, reports=reports)
    elapsed = time.perf_counter() - started
    assert applied == len(ids), answers[:3]
    return elapsed


async def claim_committed(ctx: Context, fx: Fixture) -> float:
    """A claim of ``BATCH`` queued links (the next workload reports them)."""
    await _queue(ctx, fx.flow, spread=False)
    started = time.perf_counter()
    fx.claimed = await _claim(ctx, fx.flow)
    return time.perf_counter() - started


async def results_committed(ctx: Context, fx: Fixture) -> float:
    """A batch of results for the links the claim above took (of 5 requests)."""
    return await _report(ctx, fx.flow, fx.claimed)


async def results_spread_committed(ctx: Context, fx: Fixture) -> float:
    """A batch of results for ``BATCH`` links of any request (claimed untimed)."""
    await _queue(ctx, fx.flow_spread, spread=True)
    return await _report(ctx, fx.flow_spread, await _claim(ctx, fx.flow_spread))


async def tick_committed(ctx: Context, fx: Fixture) -> float:
    """A tick placing ``BATCH`` links: every tool server given 20 free slots."""
    await _raw(ctx, "UPDATE servers SET max_threads = active_tasks + 20 WHERE service = 'tool'")
    started = time.perf_counter()
    report = await steps.tick(ctx)
    elapsed = time.perf_counter() - started
    assert report.assigned == BATCH, report
    return elapsed


WORKLOADS: dict[str, Callable[[Context, Fixture], Awaitable[float]]] = {
    "claim, 1,000 links (committed)": claim_committed,
    "bulk results, 1,000 links of 5 requests (committed)": results_committed,
    "bulk results, 1,000 links of any request (committed)": results_spread_committed,
    "tick, 1,000 placed (committed)": tick_committed,
}
