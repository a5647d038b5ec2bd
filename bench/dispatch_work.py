"""What the dispatcher benchmark (bench/dispatch.py) measures: the hand-written reference claim,
the dispatcher's step 5 and tick, a client of the seed API, and the plans of a tick."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from dispatch_data import REFERENCE_BATCH, WORKER, fill_servers, make_context
from sqlalchemy import event
from sqlalchemy.util import await_only

from assign.dispatcher import steps
from assign.services.context import Context

# --- the methods -------------------------------------------------------------------------

#: Reference claim: up to 1,000 pending links in dispatch order, paired with free slots taken
#: round-robin over the servers (priority first), expansion capped at the batch size.
REFERENCE = """
WITH slots AS (
    SELECT f.id AS server_id, row_number() OVER (ORDER BY f.k, f.priority DESC, f.id) AS rn
    FROM (SELECT s.id, s.priority, g.k
          FROM servers s
          CROSS JOIN LATERAL generate_series(1, LEAST(s.max_threads - s.active_tasks, {n})) AS g(k)
          WHERE s.status = 'online' AND s.service <> 'assign' AND s.active_tasks < s.max_threads
          ORDER BY g.k, s.priority DESC, s.id
          LIMIT {n}) AS f
), picked AS (
    SELECT p.id, row_number() OVER (ORDER BY p.priority DESC, p.created_at) AS rn
    FROM (SELECT id, priority, created_at FROM links
          WHERE status = 'pending' AND server_id IS NULL
          ORDER BY priority DESC, created_at
          LIMIT {n}
          FOR UPDATE SKIP LOCKED) AS p
), moved AS (
    UPDATE links SET status = 'queued', server_id = x.server_id, assigned_at = now(),
                     updated_at = now()
    FROM (SELECT picked.id, slots.server_id FROM picked JOIN slots USING (rn)) AS x
    WHERE links.id = x.id
    RETURNING links.server_id
), counted AS (
    UPDATE servers SET active_tasks = servers.active_tasks + c.n
    FROM (SELECT server_id, count(*) AS n FROM moved GROUP BY server_id) AS c
    WHERE servers.id = c.server_id
    RETURNING c.n
)
SELECT coalesce(sum(n), 0)::int FROM counted
""".replace("{n}", str(REFERENCE_BATCH))


async def run_reference(conn: asyncpg.Connection) -> int:
    placed = 0
    while True:
        n = await conn.fetchval(REFERENCE)
        placed += n
        if n == 0:
            return placed


async def run_step5(ctx: Context) -> int:
    report = steps.TickReport()
    await steps.assign_pending(ctx, ctx.clock.now(), report)
    return report.assigned


async def run_tick(ctx: Context) -> int:
    return (await steps.tick(ctx)).assigned


# --- the seed API client ---------------------------------------------------------------------


async def seed_client(client: httpx.AsyncClient, want: int, in_flight: int) -> int:
    """Place ``want`` links as an assign service using only the seed API would; how many."""
    servers = (await client.get(f"{WORKER}/servers/available")).json()["data"]
    ring = [s["id"] for s in servers for _ in range(s["avail_slots"])]
    ring = [ring[i] for i in sorted(range(len(ring)), key=lambda i: i % max(1, len(servers)))]
    page = await client.get(f"{WORKER}/links", params={"status": "pending", "limit": want})
    todo = list(zip([x["id"] for x in page.json()["data"]], ring, strict=False))
    placed = 0
    gate = asyncio.Semaphore(in_flight)

    async def assign(link_id: str, server_id: str) -> None:
        nonlocal placed
        async with gate:
            r = await client.put(f"{WORKER}/links/{link_id}/assign", json={"server_id": server_id})
        placed += r.status_code == 200

    if in_flight == 1:
        for link_id, server_id in todo:
            await assign(link_id, server_id)
    else:
        await asyncio.gather(*(assign(a, b) for a, b in todo))
    return placed


# --- plans -----------------------------------------------------------------------------------


def explaining_context(url: str, sink: list[str]) -> Context:
    """A context whose connections report the plan of every statement they run (auto_explain
    at NOTICE level, analysed, with buffers), appended to ``sink``."""
    ctx = make_context(url)

    @event.listens_for(ctx.db.engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        raw: asyncpg.Connection = dbapi_conn.driver_connection
        raw.add_log_listener(lambda _c, message: sink.append(message.message))
        await_only(
            raw.execute(
                "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
                "SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; "
                "SET auto_explain.log_level = notice"
            )
        )

    return ctx


def summarize_plan(text: str) -> list[str]:
    """[statement, scans, buffers of the top node, ms] of one auto_explain message."""
    lines = text.splitlines()
    top = next((i for i, line in enumerate(lines) if "(cost=" in line), len(lines))
    query = " ".join(" ".join(lines[1:top]).replace("Query Text:", "").split())
    plan = "\n".join(lines[top:])
    used = sorted(set(re.findall(r"Scan(?: Backward)? using (\w+)", plan)))
    used += sorted(set(re.findall(r"Bitmap Index Scan on (\w+)", plan)) - set(used))
    used += sorted({f"seq {t}" for t in re.findall(r"Seq Scan on (\w+)", plan)})
    buffers = re.search(r"Buffers: shared ([^\n]*)", plan)
    duration = re.search(r"duration: ([\d.]+) ms", lines[0] if lines else "")
    return [
        query[:100] + ("..." if len(query) > 100 else ""),
        ", ".join(used) or "-",
        buffers.group(1) if buffers else "-",
        duration.group(1) if duration else "-",
    ]


async def capture_plans(url: str, work: Callable[[Context], Awaitable[Any]]) -> list[str]:
    sink: list[str] = []
    ctx = explaining_context(url, sink)
    try:
        await work(ctx)
        await asyncio.sleep(0.2)  # log messages are delivered after their statement
    finally:
        await ctx.db.dispose()
    # asyncpg's own type introspection and session set-up are not the tick's
    return [m for m in sink if "plan:" in m and "typeinfo_tree" not in m and "set_config(" not in m]


async def make_work(url: str) -> None:
    """Something for every step of the next tick at 1M: a silent server, stale links, retries
    due, exhausted links, 1,000 free slots, a request to start and one to close."""
    conn = await asyncpg.connect(url)
    try:
        await fill_servers(conn, free=20)
        await conn.execute(
            """UPDATE servers SET last_health_check = now() - interval '2 hours'
               WHERE id = (SELECT id FROM servers WHERE service <> 'assign'
                           ORDER BY name LIMIT 1)"""
        )
        await conn.execute(
            """UPDATE links SET started_at = now() - interval '1 day'
               WHERE id IN (SELECT id FROM links WHERE status = 'running' ORDER BY id LIMIT 100)"""
        )
        await conn.execute(
            """UPDATE links SET retry_at = now() - interval '1 minute'
               WHERE id IN (SELECT id FROM links WHERE status = 'failed' AND retry_at IS NOT NULL
                            ORDER BY id LIMIT 100)"""
        )
        await conn.execute(
            """UPDATE links SET retry_count = 3
               WHERE id IN (SELECT id FROM links WHERE status = 'failed' AND retry_at > now()
                            ORDER BY id LIMIT 100)"""
        )
        # a pending request with a queued link (-> running), a running one all done (-> completed)
        rows = await conn.fetch(
            """INSERT INTO requests (id, service_type, name, status, type_request, priority,
                                     created_at, updated_at)
               VALUES
                   (gen_random_uuid(), 'entity', 'to start', 'pending', 'normal', 0, now(), now()),
                   (gen_random_uuid(), 'entity', 'to close', 'running', 'normal', 0, now(), now())
               RETURNING id, status"""
        )
        await conn.execute(
            """WITH src AS (SELECT id FROM links WHERE status = 'queued' ORDER BY id LIMIT 1)
               UPDATE links SET request_id = $1 FROM src WHERE links.id = src.id""",
            next(r["id"] for r in rows if r["status"] == "pending"),
        )
        await conn.execute(
            """WITH src AS (SELECT id FROM links WHERE status = 'completed' ORDER BY id LIMIT 10)
               UPDATE links SET request_id = $1 FROM src WHERE links.id = src.id""",
            next(r["id"] for r in rows if r["status"] == "running"),
        )
        await conn.execute("VACUUM ANALYZE links")
    finally:
        await conn.close()


async def slots_check(url: str) -> str:
    """Whether every server's active_tasks still equals its in-flight links."""
    conn = await asyncpg.connect(url)
    try:
        wrong = await conn.fetchval(
            """SELECT count(*) FROM servers s LEFT JOIN (
                   SELECT server_id, count(*) AS n FROM links
                   WHERE status IN ('queued', 'running', 'connecting') GROUP BY server_id) c
               ON c.server_id = s.id WHERE s.active_tasks <> coalesce(c.n, 0)"""
        )
    finally:
        await conn.close()
    return "active_tasks exact on every server" if wrong == 0 else f"{wrong} servers off"
