"""Latency of every console page with 1,000,000 links (target p99 < 100 ms).

The links are loaded as in ``read_paths.py`` (``common.generate_links``: one INSERT ... SELECT,
300 requests, 50 tool servers, ~20% pending, 80% with a posting-account email), with the
history's ``link_counts`` filled from them afterwards (the bulk load bypasses the triggers), and
5,000 posting accounts. Before the pages are timed (with ``--reuse`` too), the throughput
history is made that of a busy fleet: every request and every server completed 1-3 links and
failed 0-1 in each of the last 60 minutes, so every request has an ETA to estimate (a recent
rate, and the accounts of its links left). A real ``assign serve --no-dispatcher`` answers one
signed-in httpx client on 127.0.0.1, request after request, after a warm-up; p50 and p99 per page.

Run: ``python bench/console.py [--rows N] [--requests N] [--port P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import common
import httpx

DB_NAME = "assign_bench_console"
TARGET = 0.100


async def load(url: str, rows: int) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        _, servers = await common.add_fleet(conn, n_requests=300, n_servers=50)
        await common.generate_links(conn, "links", rows, servers)
        await common.sync_active_tasks(conn)  # generate_links filled link_counts too
        group = uuid.uuid4()
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "accounts",
            records=[
                (uuid.uuid4(), group, f"account{i}@example.com", f"user{i}", "active", now, now)
                for i in range(5000)
            ],
            columns=("id", "group_id", "email", "username", "status", "created_at", "updated_at"),
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return await pick(url)


async def pick(url: str) -> dict[str, str]:
    """Ids the timed pages show: a pending link, the biggest request, a server, a group."""
    conn = await asyncpg.connect(url)
    try:
        servers = [await conn.fetchval("SELECT id FROM servers WHERE service = 'tool' LIMIT 1")]
        group = await conn.fetchval("SELECT group_id FROM accounts LIMIT 1")
        link = await conn.fetchval("SELECT id FROM links WHERE status = 'pending' LIMIT 1")
        busiest = await conn.fetchval(
            "SELECT request_id FROM link_counts GROUP BY request_id ORDER BY sum(n) DESC LIMIT 1"
        )
        after = await conn.fetchval("SELECT id FROM links ORDER BY id OFFSET 50000 LIMIT 1")
    finally:
        await conn.close()
    return {
        "request": str(busiest), "server": str(servers[0]), "link": str(link),
        "after": str(after), "group": str(group),
    }  # fmt: skip


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("Overview", "/ui/overview"),
        ("Overview (live part)", "/ui/overview/live"),
        ("Servers", "/ui/servers"),
        ("Server", f"/ui/servers/{ids['server']}"),
        ("Requests", "/ui/requests"),
        ("Requests ?status=running", "/ui/requests?status=running"),
        ("Request", f"/ui/requests/{ids['request']}"),
        ("Links", "/ui/links"),
        ("Links ?after=", f"/ui/links?after={ids['after']}"),
        ("Links ?status=pending", "/ui/links?status=pending"),
        ("Links ?status=failed", "/ui/links?status=failed"),
        ("Links ?request_id=", f"/ui/links?request_id={ids['request']}"),
        ("Links ?server_id=", f"/ui/links?server_id={ids['server']}"),
        ("Links ?email=", "/ui/links?email=account42%40example.com"),
        ("Links ?error=captcha", "/ui/links?error=captcha"),
        ("Link", f"/ui/links/{ids['link']}"),
        ("Accounts", f"/ui/accounts?group_id={ids['group']}"),
        ("Settings", "/ui/settings"),
    ]


def measure(base: str, key: str, ids: dict[str, str], requests: int) -> list[list[str]]:
    """p50 and p99 of each page, one signed-in client, request after request."""
    out = []
    with httpx.Client(base_url=base) as http:
        signed = http.post("/ui/login", data={"admin_key": key})
        assert signed.status_code == 303, signed.text
        for label, path in pages(ids):
            for _ in range(5):
                warm = http.get(path)
                assert warm.status_code == 200, (path, warm.text[:300])
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                response = http.get(path)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200
            p50, p99 = common.percentile(times, 50), common.percentile(times, 99)
            verdict = "ok" if p99 < TARGET else "OVER"
            out.append([label, f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}", verdict])
            print(f"{label}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({verdict})")
    return out


async def main(rows: int, requests: int, port: int, keep: bool, reuse: bool) -> None:
    if reuse:  # the database a run with --keep left
        url = common.db_url(DB_NAME)
        common.cli("migrate", url=url)
        ids = await pick(url)
        await time_pages(url, ids, requests, port)
        return
    async with common.scratch_database(DB_NAME, keep=keep) as url:
        started = time.perf_counter()
        ids = await load(url, rows)
        print(f"loaded {rows:,} links in {time.perf_counter() - started:.0f} s")
        await time_pages(url, ids, requests, port)


#: the last hour of a busy fleet, per request and per server (the bulk load wrote no history)
RECENT_THROUGHPUT = """
INSERT INTO throughput (kind, minute, key, completed, failed)
SELECT k.kind, date_trunc('minute', now()) - make_interval(mins => m), k.id,
       1 + abs(hashtext(k.id::text || m)) % 3, abs(hashtext(m || k.id::text)) % 2
FROM (SELECT 'request' AS kind, id FROM requests
      UNION ALL SELECT 'server', id FROM servers WHERE service = 'tool') k
CROSS JOIN generate_series(0, 59) AS m
"""


async def busy_history(url: str) -> None:
    """Throughput of the last 60 minutes as a busy fleet leaves it (replacing any)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM throughput")
        await conn.execute(RECENT_THROUGHPUT)
        await conn.execute("VACUUM ANALYZE throughput")
    finally:
        await conn.close()


async def time_pages(url: str, ids: dict[str, str], requests: int, port: int) -> None:
    await busy_history(url)
    key = common.cli("admin-key", "create", "--name", "bench", url=url).strip().splitlines()[-1]
    with common.ApiServer(url, port) as api:
        out = await asyncio.to_thread(measure, api.base, key, ids, requests)
    print()
    print(common.table(["page", "p50 ms", "p99 ms", "p99 < 100 ms"], out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="links in the table")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per page")
    parser.add_argument("--port", type=int, default=8105, help="port of assign serve (8100-8199)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="time the database --keep left")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.requests, args.port, args.keep, args.reuse))
