"""Retention: the dispatcher's tick and ``GET /links`` with most links archived, against none.

Two scratch PostgreSQL databases with the same live fleet: 50 online tool servers with no free
slot (an idle tick: nothing stale, nothing due, pending links waiting), ``--live`` links in
``links`` (a fifth ``pending``, the rest completed, of open requests). The second one also holds
``--links`` minus the live ones in ``links_archive`` (requests closed long ago, as the leader
leaves them). Measured in turns on both: the full tick (``tick(ctx)``) and ``GET
/api/v1/worker/links?status=pending&limit=1000`` through the application (ASGI, no socket),
``--rounds`` times each; medians and p99, and their ratio archived/none.

PRODUCT §13 asks for 10M links, 9M of them archived (``--links 10000000 --live 1000000``); that
takes long on a small machine, so a smaller run (``--links 200000 --live 20000``) shows the
shape: the archived rows are in another table, so no statement of the tick or of the listing
reads them.

Run: ``python bench/retention.py [--links N] [--live N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from assign.app import create_app
from assign.clock import Clock
from assign.db.engine import Database
from assign.dispatcher.steps import tick
from assign.security.crypto import Cipher
from assign.services import servers as servers_service
from assign.services.context import Context
from assign.settings import Settings

LIVE_SQL = """
INSERT INTO links (id, request_id, service_type, status, phase, priority, retry_count,
                   max_retries, email, completed_at, created_at, updated_at)
SELECT gen_random_uuid(), ($1::uuid[])ARRAY_INDEX, 'entity',
       CASE WHEN i % 5 = 0 THEN 'pending' ELSE 'completed' END, 'create', 0, 0, 3,
       'account' || (i % 5000) || '@example.com',
       CASE WHEN i % 5 = 0 THEN NULL ELSE now() - interval '1 hour' END,
       now() - (i || ' seconds')::interval, now()
FROM generate_series(1, $2) AS i
"""
ARCHIVED_SQL = """
INSERT INTO links_archive (id, request_id, service_type, status, phase, priority, retry_count,
                           max_retries, email, completed_at, created_at, updated_at, archived_at)
SELECT gen_random_uuid(), ($1::uuid[])ARRAY_INDEX, 'entity', 'completed', 'create', 0, 0, 3,
       'account' || (i % 5000) || '@example.com', now() - interval '60 days',
       now() - interval '61 days', now() - interval '60 days', now() - interval '29 days'
FROM generate_series(1, $2) AS i
"""


async def fill(url: str, *, live: int, archived: int) -> str:
    """The fleet and its links; an assign server's key."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        now = "now()"
        open_ids = [uuid.uuid4() for _ in range(20)]
        closed_ids = [uuid.uuid4() for _ in range(200)]
        for ids, status in ((open_ids, "running"), (closed_ids, "completed")):
            await conn.executemany(
                "INSERT INTO requests (id, service_type, name, status, type_request, priority,"
                f" created_links, completed_at, created_at, updated_at) VALUES ($1, 'entity', 'r',"
                f" $2, 'normal', 0, 0, {'NULL' if status == 'running' else now}, {now}, {now})",
                [(i, status) for i in ids],
            )
        pick = "[1 + (i % array_length($1::uuid[], 1))]"
        await conn.execute(LIVE_SQL.replace("ARRAY_INDEX", pick), open_ids, live)
        if archived:
            await conn.execute(ARCHIVED_SQL.replace("ARRAY_INDEX", pick), closed_ids, archived)
            await conn.execute("UPDATE requests SET archived_at = now() WHERE status = 'completed'")
        await conn.execute("UPDATE settings SET value = '1000000' WHERE key = 'max_posts_per_day'")
        await conn.execute("UPDATE settings SET value = '0' WHERE key = 'cooldown_minutes'")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return url


async def context(url: str) -> Context:
    settings = Settings(database_url=url, secret_key=common.SECRET, dispatch_interval=2)
    db = Database(settings.database_url, pool_size=4)
    ctx = Context(db=db, settings=settings, cipher=Cipher(common.SECRET), clock=Clock())
    for i in range(50):  # online, heartbeating, and full: the tick places nothing
        server = await servers_service.create_server(
            ctx, name=f"tool-{i}", service="tool", max_threads=1
        )
        await servers_service.heartbeat(ctx, server_id=server["id"], active_threads=0)
    async with db.transaction() as conn:
        await conn.execute(sa.text("UPDATE servers SET active_tasks = max_threads"))
    return ctx


async def measure(ctx: Context, key: str, rounds: int) -> dict[str, list[float]]:
    app = create_app(context=ctx, migrate=False)
    out: dict[str, list[float]] = {"tick": [], "links": []}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for _ in range(rounds):
            async with ctx.db.transaction() as conn:  # the fleet stays alive between turns
                await conn.execute(sa.text("UPDATE servers SET last_health_check = now()"))
            started = time.perf_counter()
            await tick(ctx)
            out["tick"].append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = await http.get(
                "/api/v1/worker/links",
                params={"status": "pending", "limit": 1000},
                headers={"X-API-Key": key},
            )
            out["links"].append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    async with ctx.db.transaction() as conn:
        lost = (
            await conn.execute(sa.text("SELECT count(*) FROM servers WHERE status <> 'online'"))
        ).scalar()
    assert lost == 0, f"{lost} servers went offline: the ticks measured are not of a live fleet"
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    archived = max(0, args.links - args.live)
    cases = {}
    names = {"none archived": 0, f"{archived:,} archived": archived}
    async with (
        common.scratch_database("assign_bench_retention_a") as none_url,
        common.scratch_database("assign_bench_retention_b") as some_url,
    ):
        contexts = {}
        for (label, n), url in zip(names.items(), (none_url, some_url), strict=True):
            await fill(url, live=args.live, archived=n)
            ctx = await context(url)
            assign = await servers_service.create_server(ctx, name="feeder", service="assign")
            contexts[label] = (ctx, assign["api_key"])
        results: dict[str, dict[str, list[float]]] = {
            label: {"tick": [], "links": []} for label in names
        }
        for _ in range(max(1, args.rounds // 10)):  # in turns, ten rounds at a time
            for label, (ctx, key) in contexts.items():
                got = await measure(ctx, key, min(10, args.rounds))
                for k, v in got.items():
                    results[label][k] += v
        for ctx, _ in contexts.values():
            await ctx.db.dispose()
        cases = results
    print(f"\n{args.live:,} live links; {args.rounds} rounds each, in turns (ms)\n")
    print("| case | tick p50 | tick p99 | GET /links p50 | GET /links p99 |")
    print("|---|---|---|---|---|")
    for label, got in cases.items():
        t, g = got["tick"], got["links"]
        print(f"| {label} | {statistics.median(t) * 1000:.1f} | {p99(t) * 1000:.1f} | "
              f"{statistics.median(g) * 1000:.1f} | {p99(g) * 1000:.1f} |")  # fmt: skip
    (none, some) = cases.values()
    print(
        f"\nratio archived/none: tick p50 {statistics.median(some['tick']) / statistics.median(none['tick']):.2f}, "
        f"GET /links p50 {statistics.median(some['links']) / statistics.median(none['links']):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=10_000_000, help="links in all")
    parser.add_argument("--live", type=int, default=1_000_000, help="of which in the hot table")
    parser.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
