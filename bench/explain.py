"""Latency of "why is this link waiting" at 1,000,000 links.

A PostgreSQL scratch database with 1,000,000 links (``common.generate_links``: 200,000 pending),
300 requests and 50 online tool servers with a fresh heartbeat and free slots, the shipped rate
limits (50 a day, 5 minutes cooldown). ``--samples`` pending links picked at random over the
whole queue (so most have far more than 1,000 links ahead of them), plus the head and the tail
of the queue, are explained in turn, each through the service (``explain.explain_link``, what
``GET /api/v1/admin/links/:id/explain`` runs) and through HTTP on a real ``assign serve``;
p50/p90/p99 and the reasons answered. Then the plan of the "ahead in line" count (one statement
over three ranges, as ``repositories.explain.ahead_in_line`` runs it) for a link deep in the queue.

Run: ``python bench/explain.py [--samples N] [--links N] [--port P] [--keep]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter

import asyncpg
import common
import httpx

from assign.app import build_context
from assign.domain import explain as rules
from assign.services import explain
from assign.services.context import Context
from assign.settings import Settings


async def prepare(url: str, links: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        _, servers = await common.add_fleet(conn, n_requests=300, n_servers=50)
        await common.generate_links(conn, "links", links, servers)
        await common.sync_active_tasks(conn)
        await conn.execute(
            "UPDATE servers SET last_health_check = now(), max_threads = active_tasks + 10"
        )
        await conn.execute("ANALYZE servers")
        ids = await conn.fetch(
            "SELECT id FROM links WHERE status = 'pending' ORDER BY priority DESC, created_at, id"
        )
        return [str(r["id"]) for r in ids]
    finally:
        await conn.close()


async def time_service(ctx: Context, picked: list[str]) -> tuple[list[float], Counter[str]]:
    """Milliseconds of ``explain.explain_link`` for each of ``picked`` (after a warm-up), and
    the reasons answered."""
    for id_ in picked[:20]:  # warm-up
        await explain.explain_link(ctx, link_id=uuid.UUID(id_))
    service_ms, reasons = [], Counter()
    for id_ in picked:
        t0 = time.perf_counter()
        answer = await explain.explain_link(ctx, link_id=uuid.UUID(id_))
        service_ms.append((time.perf_counter() - t0) * 1000)
        reasons[answer["reason"]] += 1
    return service_ms, reasons


async def time_http(url: str, port: int, picked: list[str]) -> list[float]:
    """Milliseconds of ``GET /admin/links/:id/explain`` on a real ``assign serve`` for each of
    ``picked`` (after a warm-up)."""
    key = common.cli("admin-key", "create", "--name", "bench", url=url).strip().split()[-1]
    with common.ApiServer(url, port) as api:
        async with httpx.AsyncClient(base_url=api.base, headers={"X-API-Key": key}) as http:
            for id_ in picked[:20]:
                await http.get(f"/api/v1/admin/links/{id_}/explain")
            http_ms = []
            for id_ in picked:
                t0 = time.perf_counter()
                response = await http.get(f"/api/v1/admin/links/{id_}/explain")
                http_ms.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.text
    return http_ms


async def print_plans(conn: asyncpg.Connection, link_id: str) -> None:
    """The plan of the "ahead in line" count of ``link_id``: its three index ranges in one
    statement that stops at the cap."""
    link = await conn.fetchrow(
        "SELECT priority, created_at, id FROM links WHERE id = $1", uuid.UUID(link_id)
    )
    cap = rules.AHEAD_CAP + 1
    ranges = (
        "priority > $1",
        "priority = $1 AND created_at < $2",
        "priority = $1 AND created_at = $2 AND id < $3",
    )
    union = " UNION ALL ".join(
        f"SELECT one FROM (SELECT 1 AS one FROM links WHERE status = 'pending' AND {r} "
        f"LIMIT {cap}) r{i}"
        for i, r in enumerate(ranges)
    )
    plan = await conn.fetch(
        f"EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM (SELECT one FROM ({union}) u LIMIT {cap}) s",
        link["priority"],
        link["created_at"],
        link["id"],
    )
    print("\n".join(r[0] for r in plan) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=8151)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    name = f"assign_bench_explain_{os.getpid()}"
    async with common.scratch_database(name, keep=args.keep) as url:
        started = time.perf_counter()
        queue = await prepare(url, args.links)
        print(f"set-up: {args.links:,} links, {len(queue):,} pending, "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        conn = await asyncpg.connect(url)
        print(await common.machine_line(conn))
        step = max(1, len(queue) // args.samples)
        picked = [queue[0], queue[1], *queue[::step][: args.samples], queue[-1]]
        settings = Settings(database_url=url, secret_key=common.SECRET, db_pool_size=2)
        ctx = build_context(settings)
        rows = []
        try:
            service_ms, reasons = await time_service(ctx, picked)
            rows.append(["service (in process)", *_percentiles(service_ms)])
            http_ms = await time_http(url, args.port, picked)
            rows.append(["GET /admin/links/:id/explain over HTTP", *_percentiles(http_ms)])
            print(f"\n{len(picked)} pending links over the whole queue, sequential calls\n")
            print(common.table(["path", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
            print(f"\nreasons: {dict(reasons)}")
            print("\nplan of the 'ahead in line' count for a link in the middle of the queue:\n")
            await print_plans(conn, picked[len(picked) // 2])
        finally:
            await ctx.db.dispose()
            await conn.close()


def _percentiles(values: list[float]) -> list[str]:
    return [f"{common.percentile(values, p):.1f}" for p in (50, 90, 99)] + [f"{max(values):.1f}"]


if __name__ == "__main__":
    asyncio.run(main())
