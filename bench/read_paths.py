"""Latency of the two hot reads of the worker API with 1,000,000 links in the table.

* ``GET /api/v1/worker/links?status=pending&limit=1000`` (target p99 < 50 ms)
* ``GET /api/v1/worker/servers/available`` (target p99 < 10 ms)

The links are loaded with one ``INSERT ... SELECT generate_series`` (see ``common.GENERATE_LINKS``):
~72% completed, 20% pending (200k), 2% each queued, running and failed, some canceled and connect,
across 300 requests of varied priority and 50 tool servers, 80% with a posting-account email.
A real ``assign serve --no-dispatcher`` answers sequential requests from one httpx client on
127.0.0.1 after a warm-up. Measured in the same loop, interleaved request by request, as floors:
the application's own SQL run directly with asyncpg (rows fetched, nothing else), and the same
SQL with PostgreSQL building the JSON (``json_agg``). Then EXPLAIN (ANALYZE, BUFFERS) of the SQL
the application runs (captured from SQLAlchemy), with the custom plan and with the generic plan
that prepared statements switch to after five runs.

Run: ``python bench/read_paths.py [--requests N] [--rows N] [--port P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import common
import httpx
import orjson
import sqlalchemy as sa

from assign.db.engine import Database
from assign.db.repositories import links as links_repo
from assign.db.repositories import servers as servers_repo
from assign.security import keys
from assign.settings import normalize_database_url

DB_NAME = "assign_bench_read"
LINKS_PATH = "/api/v1/worker/links?status=pending&limit=1000"
SERVERS_PATH = "/api/v1/worker/servers/available"
LINKS = "GET /links?status=pending&limit=1000"
LINKS_ROWS = "the same links as rows (the SQLite path, and this path before json)"
SERVERS = "GET /servers/available"


async def capture_sql(url: str, key: str) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The SQL (and parameters) the application runs for each read, as sent to asyncpg."""
    db = Database(normalize_database_url(url), pool_size=1)
    seen: list[tuple[str, tuple[Any, ...]]] = []

    @sa.event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, tuple(params or ())))

    out = {}
    listing = {"statuses": ["pending"], "service_type": None, "request_id": None,
               "server_id": None, "limit": 1000}  # fmt: skip
    try:
        async with db.read() as conn:
            await servers_repo.get_by_key_hash(conn, keys.hash_key(key))
            out["auth: server by key hash"] = seen[-1]
            # what services.links.list_links runs on PostgreSQL
            await links_repo.list_links_json(conn, **listing)
            out[LINKS] = seen[-1]
            await links_repo.list_links(conn, **listing)
            out[LINKS_ROWS] = seen[-1]
            await servers_repo.list_available(conn, statuses=["online"], service=None, limit=1000)
            out[SERVERS] = seen[-1]
    finally:
        await db.dispose()
    return out


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, uuid.UUID | datetime):
        value = str(value)
    if isinstance(value, list | tuple):
        return "ARRAY[" + ", ".join(literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


async def explain(conn: asyncpg.Connection, sql: str, params: tuple[Any, ...]) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of a prepared ``sql``: custom and generic plan."""
    plans = {}
    await conn.execute(f"PREPARE bench_q AS {sql}")
    try:
        execute = "EXECUTE bench_q" + (
            f"({', '.join(literal(p) for p in params)})" if params else ""
        )
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {execute}")
            plans[mode.split("_")[1]] = "\n".join(r[0] for r in rows)
    finally:
        await conn.execute("RESET plan_cache_mode")
        await conn.execute("DEALLOCATE bench_q")
    return plans


def json_agg(sql: str) -> str:
    return f"SELECT coalesce(json_agg(t), '[]')::text FROM ({sql}) AS t"


async def measure(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    *,
    path: str,
    floors: dict[str, tuple[str, tuple[Any, ...]]],
    expect: int,
    n: int,
    warmup: int,
    server_pid: int,
) -> dict[str, Any]:
    """Sequential GETs of ``path`` interleaved with each floor query; latencies and CPU time."""
    own = [await conn.fetchval("SELECT pg_backend_pid()")]
    times: dict[str, list[float]] = {"http": [], **{name: [] for name in floors}}
    cpu: dict[str, float] = dict.fromkeys(times, 0.0)
    cpu_db: dict[str, float] = dict.fromkeys(times, 0.0)
    size = 0
    app_backends: list[int] = []
    for i in range(warmup + n):
        if i == warmup:
            app_backends = await common.backend_pids(conn)
            api0, db0 = common.cpu_seconds([server_pid]), common.cpu_seconds(app_backends)
        started = time.perf_counter()
        response = await client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        total = orjson.loads(response.content)["total"]
        if total != expect:
            raise RuntimeError(f"GET {path} returned {total} items, expected {expect}")
        size = len(response.content)
        if i >= warmup:
            times["http"].append(elapsed)
        for name, (sql, params) in floors.items():
            c0 = common.cpu_seconds(own)
            started = time.perf_counter()
            await conn.fetch(sql, *params)
            elapsed = time.perf_counter() - started
            if i >= warmup:
                times[name].append(elapsed)
                cpu_db[name] += common.cpu_seconds(own) - c0
    cpu["http"] = common.cpu_seconds([server_pid]) - api0
    cpu_db["http"] = common.cpu_seconds(app_backends) - db0
    return {"times": times, "cpu": cpu, "cpu_db": cpu_db, "size": size, "n": n}


def ms(v: float) -> str:
    return f"{v * 1000:.1f}"


async def load(conn: asyncpg.Connection, rows: int) -> int:
    """The fleet and ``rows`` links; how many servers have a free slot."""
    started = time.perf_counter()
    _, servers = await common.add_fleet(conn, n_requests=300, n_servers=50)
    await common.generate_links(conn, "links", rows, servers)
    await common.sync_active_tasks(conn)
    # four servers in five with free slots (50 to 200), one in five full
    await conn.execute(
        """
        UPDATE servers SET max_threads = active_tasks
            + CASE WHEN right(name, 1)::int % 5 = 0 THEN 0
                   ELSE 50 * (right(name, 1)::int % 4 + 1) END
        WHERE service = 'tool'
        """
    )
    await conn.execute("VACUUM ANALYZE servers")
    await conn.execute("CHECKPOINT")
    counts = await conn.fetch(
        "SELECT status, count(*) AS n FROM links GROUP BY status ORDER BY n DESC"
    )
    print(
        f"loaded in {time.perf_counter() - started:.0f} s: "
        + ", ".join(f"{r['status']} {r['n']:,}" for r in counts)
    )
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM servers WHERE status = 'online' AND service <> 'assign'"
            " AND max_threads > active_tasks"
        )
    )


def cases_of(sql: dict[str, Any], available: int) -> list[tuple[str, str, int, float, Any]]:
    """(label, path, rows expected, p99 target, floors) of each endpoint measured."""
    rows_sql, rows_params = sql[LINKS_ROWS]
    servers_sql, servers_params = sql[SERVERS]
    links_floors = {
        "its SQL (PostgreSQL encodes the JSON) via asyncpg": sql[LINKS],
        "the row SELECT via asyncpg (rows fetched, not encoded)": sql[LINKS_ROWS],
        "the row SELECT wrapped in json_agg": (json_agg(rows_sql), rows_params),
    }
    servers_floors = {
        "its SQL via asyncpg (rows fetched)": sql[SERVERS],
        "its SQL wrapped in json_agg": (json_agg(servers_sql), servers_params),
    }
    return [
        (LINKS, LINKS_PATH, 1000, 0.050, links_floors),
        (SERVERS, SERVERS_PATH, available, 0.010, servers_floors),
    ]


def print_times(results: list[dict[str, Any]]) -> None:
    """One row per path and per floor: percentiles, API and PostgreSQL CPU per request."""
    table = []
    for r in results:
        n_ = r["n"]
        for name, v in r["times"].items():
            title = (
                f"{r['label']} over HTTP ({r['size'] / 1024:.0f} KiB)"
                if name == "http"
                else f"  {name}"
            )
            api_cpu = f"{r['cpu'][name] / n_ * 1000:.1f}" if name == "http" else ""
            table.append(
                [
                    title,
                    len(v),
                    ms(common.percentile(v, 50)),
                    ms(common.percentile(v, 90)),
                    ms(common.percentile(v, 99)),
                    ms(max(v)),
                    api_cpu,
                    f"{r['cpu_db'][name] / n_ * 1000:.1f}",
                ]
            )
    headers = ["path", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "API CPU ms", "PG CPU ms"]
    print(common.table(headers, table))


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each path's p50 and p99 against its target, printed; the summary."""
    summary = []
    for r in results:
        t = r["times"]
        p50, p99 = common.percentile(t["http"], 50), common.percentile(t["http"], 99)
        floor_name = next(k for k in t if k != "http")
        verdict = "meets" if p99 < r["target"] else "MISSES"
        print(
            f"{r['label']}: p50 {ms(p50)} ms, p99 {ms(p99)} ms (target p99 < "
            f"{r['target'] * 1000:.0f} ms: {verdict}); p50 = "
            f"{p50 / common.percentile(t[floor_name], 50):.1f} x {floor_name.split(' (')[0]}"
        )
        summary.append({"label": r["label"], "p50": p50, "p99": p99, "target": r["target"]})
    return summary


async def main(n: int, rows: int, port: int, keep: bool) -> list[dict[str, Any]]:
    print(f"== read paths: {rows:,} links, {n} sequential requests per endpoint after warm-up")
    async with common.scratch_database(DB_NAME, keep=keep) as url:
        key = common.worker_key(url)
        conn = await asyncpg.connect(url)
        try:
            print(await common.machine_line(conn))
            available = await load(conn, rows)
            sql = await capture_sql(url, key)
            results = []
            with common.ApiServer(url, port) as api:
                async with httpx.AsyncClient(
                    base_url=api.base, headers={"X-API-Key": key}, timeout=30
                ) as client:
                    for label, path, expect, target, floors in cases_of(sql, available):
                        measured = await measure(
                            client,
                            conn,
                            path=path,
                            floors=floors,
                            expect=expect,
                            n=n,
                            warmup=max(20, n // 10),
                            server_pid=api.pid,
                        )
                        results.append({"label": label, "target": target, **measured})
            plans = {name: await explain(conn, s, p) for name, (s, p) in sql.items()}
            print(await common.machine_line(conn))
        finally:
            await conn.close()
    print_times(results)
    summary = summarize(results)
    for name, (statement, params) in sql.items():
        print(f"\n-- {name}\n{statement}\n-- parameters: {list(map(str, params))}")
        for mode, plan in plans[name].items():
            print(f"-- {mode} plan\n{plan}")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--rows", type=int, default=1_000_000, help="links in the table")
    parser.add_argument("--port", type=int, default=8102, help="port of assign serve (8100-8199)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rows, args.port, args.keep))
