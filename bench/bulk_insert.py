"""POST /api/v1/worker/links/bulk (5,000 links over HTTP) against a raw asyncpg COPY of them.

Both paths write into tables with the same columns, indexes and foreign keys, on the same
PostgreSQL, interleaved batch by batch (the order alternating), so checkpoints and other load hit
both alike; figures are medians over many batches. Two table sizes: empty (both tables truncated
before each pair of batches) and about 1,000,000 rows.

* ``http``: a real ``assign serve --no-dispatcher`` subprocess, an httpx client on 127.0.0.1 posting
  a pre-encoded body; the time is the whole round trip (parsing, validation, request look-up,
  password encryption, COPY into ``links``, commit, response).
* ``raw COPY``: ``copy_records_to_table`` of pre-built records (same values, passwords already
  encrypted) into ``links_raw`` in one transaction. ``links_raw`` is ``LIKE links INCLUDING ALL``
  plus the two foreign keys of ``links`` (to ``requests`` and ``servers``), so PostgreSQL does the
  same work on both sides and the ratio measures what Assign adds. The same COPY into a copy of the
  table without the foreign keys is shown for reference.

Run: ``python bench/bulk_insert.py [--batches N] [--rows-1m N] [--port P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import common
import httpx
import orjson

from assign.db.repositories.links import INSERT_COLUMNS
from assign.security.crypto import Cipher

DB_NAME = "assign_bench_insert"
BATCH = 5000
PATH = "/api/v1/worker/links/bulk"


def make_links(reqs: list[tuple[uuid.UUID, str, int]], seed: int) -> list[dict[str, Any]]:
    """One batch of link bodies as an assign service would post them."""
    rnd = random.Random(seed)
    out = []
    for i in range(BATCH):
        rid, kind, _ = rnd.choice(reqs)
        n = seed * BATCH + i
        out.append(
            {
                "request_id": str(rid),
                "service_type": kind,
                "site_id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "site_name": f"site-{n % 200}",
                "email": f"account{rnd.randrange(5000)}@example.com",
                "username": f"user{n}",
                "password": f"pw-{rnd.getrandbits(64):016x}",
                "about": "About this profile: " + "link building " * 10,
                "details": {"keyword": f"keyword {n % 1000}", "anchor": f"anchor {n % 97}"},
            }
        )
    return out


def raw_records(
    items: list[dict[str, Any]], priorities: dict[str, int], cipher: Cipher
) -> list[tuple[Any, ...]]:
    """The rows ``create_links`` writes for ``items``, as COPY records (INSERT_COLUMNS order)."""
    now = datetime.now(UTC)
    records = []
    for item in items:
        row = {
            "id": uuid.uuid4(),
            "request_id": uuid.UUID(item["request_id"]),
            "service_type": item["service_type"],
            "server_id": None,
            "site_id": uuid.UUID(item["site_id"]),
            "site_name": item["site_name"],
            "email": item["email"],
            "username": item["username"],
            "password_enc": cipher.encrypt(item["password"]),
            "about": item["about"],
            "status": "pending",
            "phase": "create",
            "priority": priorities[item["request_id"]],
            "retry_count": 0,
            "max_retries": 3,
            "details": orjson.dumps(item["details"]).decode(),
            "assigned_at": None,
            "created_at": now,
            "updated_at": now,
        }
        records.append(tuple(row[c] for c in INSERT_COLUMNS))
    return records


async def setup_raw_tables(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE links_raw (LIKE links INCLUDING ALL)")
    await conn.execute(
        """
        ALTER TABLE links_raw
          ADD FOREIGN KEY (request_id) REFERENCES requests (id) ON DELETE CASCADE,
          ADD FOREIGN KEY (server_id) REFERENCES servers (id) ON DELETE SET NULL
        """
    )
    await conn.execute("CREATE TABLE links_raw_nofk (LIKE links INCLUDING ALL)")


async def copy_batch(conn: asyncpg.Connection, table: str, records: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    async with conn.transaction():
        await conn.copy_records_to_table(table, records=records, columns=INSERT_COLUMNS)
    return time.perf_counter() - started


async def http_batch(client: httpx.AsyncClient, body: bytes) -> float:
    started = time.perf_counter()
    response = await client.post(PATH, content=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or response.json().get("created") != BATCH:
        raise RuntimeError(f"bulk insert answered {response.status_code}: {response.text[:300]}")
    return elapsed


PATHS = {
    "http": "POST /links/bulk over HTTP",
    "raw": "raw asyncpg COPY, same FKs",
    "raw_nofk": "raw asyncpg COPY, no FKs",
}


async def run_phase(
    *,
    label: str,
    conn: asyncpg.Connection,
    client: httpx.AsyncClient,
    server_pid: int,
    reqs: list[tuple[uuid.UUID, str, int]],
    cipher: Cipher,
    batches: int,
    truncate: bool,
    seed0: int,
) -> dict[str, Any]:
    """``batches`` rounds of the three paths (order alternating); wall time and CPU time each.

    CPU: the API process (``http``) or this client's COPY encoding (``raw``), and the
    PostgreSQL backends doing the insert.
    """
    priorities = {str(r): p for r, _, p in reqs}
    own = [await conn.fetchval("SELECT pg_backend_pid()")]
    times: dict[str, list[float]] = {k: [] for k in PATHS}
    cpu: dict[str, float] = dict.fromkeys(PATHS, 0.0)
    cpu_db: dict[str, float] = dict.fromkeys(PATHS, 0.0)
    for b in range(batches):
        items = make_links(reqs, seed0 + b)
        body = orjson.dumps({"links": items})
        records = {
            "raw": raw_records(items, priorities, cipher),
            "raw_nofk": raw_records(items, priorities, cipher),
        }
        if truncate:
            await conn.execute("TRUNCATE links, links_raw, links_raw_nofk")
        app_backends = await common.backend_pids(conn)
        order = list(PATHS) if b % 2 == 0 else list(reversed(PATHS))
        for name in order:
            if name == "http":
                c0, d0 = common.cpu_seconds([server_pid]), common.cpu_seconds(app_backends)
                times[name].append(await http_batch(client, body))
                cpu[name] += common.cpu_seconds([server_pid]) - c0
                cpu_db[name] += common.cpu_seconds(app_backends) - d0
            else:
                c0, d0 = time.process_time(), common.cpu_seconds(own)
                table = "links_raw" if name == "raw" else "links_raw_nofk"
                times[name].append(await copy_batch(conn, table, records[name]))
                cpu[name] += time.process_time() - c0
                cpu_db[name] += common.cpu_seconds(own) - d0
    return {"label": label, "times": times, "cpu": cpu, "cpu_db": cpu_db, "n": batches}


def report(phases: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    rows = []
    summary = []
    for phase in phases:
        t, n = phase["times"], phase["n"]
        med = {k: common.median(v) for k, v in t.items()}
        rate = {k: BATCH / v for k, v in med.items()}
        ratio = rate["http"] / rate["raw"]
        summary.append({"label": phase["label"], "rate": rate, "ratio": ratio})
        for key, name in PATHS.items():
            rows.append(
                [
                    phase["label"],
                    name,
                    len(t[key]),
                    f"{med[key] * 1000:.0f}",
                    f"{min(t[key]) * 1000:.0f}-{max(t[key]) * 1000:.0f}",
                    f"{rate[key]:,.0f}",
                    f"{rate[key] / rate['raw']:.2f}",
                    f"{phase['cpu'][key] / n * 1000:.0f}",
                    f"{phase['cpu_db'][key] / n * 1000:.0f}",
                ]
            )
    headers = [
        "table", "path", "batches", "median ms", "min-max ms", "rows/s", "vs raw COPY",
        "API/client CPU ms", "PG CPU ms",
    ]  # fmt: skip
    return common.table(headers, rows), summary


async def load_large(conn: asyncpg.Connection, rows_1m: int, servers: list[uuid.UUID]) -> None:
    """``rows_1m`` links in each of the three tables, then a checkpoint."""
    print(f"loading {rows_1m:,} links into each table ...", flush=True)
    started = time.perf_counter()
    await conn.execute("TRUNCATE links, links_raw, links_raw_nofk")
    for t in ("links", "links_raw", "links_raw_nofk"):
        await common.generate_links(conn, t, rows_1m, servers)
    await conn.execute("CHECKPOINT")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)


async def main(batches: int, rows_1m: int, port: int, keep: bool) -> list[dict[str, Any]]:
    print(f"== bulk insert: {BATCH:,} links a batch, {batches} batches per path and table size")
    async with common.scratch_database(DB_NAME, keep=keep) as url:
        key = common.worker_key(url)
        conn = await asyncpg.connect(url)
        try:
            print(await common.machine_line(conn))
            reqs, servers = await common.add_fleet(conn, n_requests=300, n_servers=50)
            await setup_raw_tables(conn)
            cipher = Cipher(common.SECRET)
            phases = []
            with common.ApiServer(url, port) as api:
                async with httpx.AsyncClient(
                    base_url=api.base,
                    headers={"X-API-Key": key, "Content-Type": "application/json"},
                    timeout=120,
                ) as client:
                    phase = functools.partial(
                        run_phase, conn=conn, client=client, server_pid=api.pid, reqs=reqs,
                        cipher=cipher,
                    )  # fmt: skip
                    # warm-up: first connections, prepared statements, imports
                    await phase(label="warm-up", batches=2, truncate=True, seed0=10_000)
                    phases.append(
                        await phase(label="empty", batches=batches, truncate=True, seed0=0)
                    )
                    await load_large(conn, rows_1m, servers)
                    label = f"{rows_1m / 1e6:g}M rows"
                    phases.append(
                        await phase(label=label, batches=batches, truncate=False, seed0=1000)
                    )
            print(await common.machine_line(conn))
        finally:
            await conn.close()
    text, summary = report(phases)
    print(text)
    for s in summary:
        verdict = "meets" if s["ratio"] >= 0.6 else "MISSES"
        print(
            f"{s['label']}: HTTP {s['rate']['http']:,.0f} rows/s = {s['ratio']:.2f} x raw COPY "
            f"({s['rate']['raw']:,.0f} rows/s); target >= 0.60: {verdict}"
        )
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=20, help="batches per path and size")
    parser.add_argument("--rows-1m", type=int, default=1_000_000, help="rows of the large table")
    parser.add_argument("--port", type=int, default=8101, help="port of assign serve (8100-8199)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.rows_1m, args.port, args.keep))
