"""The raw SQL ceilings of ``bench/e2e.py``: the same no-op links claimed and completed by
plain statements on PostgreSQL (asyncpg) and SQLite, per link or in batches."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
import uuid

import asyncpg
import common
from e2e_data import Run, seed_postgres, seed_sqlite

RAW_CLAIM = (
    "UPDATE links SET status = 'running', started_at = now() WHERE id IN (SELECT id FROM links "
    "WHERE status = 'queued' ORDER BY priority DESC, created_at LIMIT {n} FOR UPDATE SKIP LOCKED) "
    "RETURNING id"
)


async def raw_pg(name: str, batched: bool, args: argparse.Namespace) -> Run:
    run = Run(name, args.links)
    async with common.scratch_database(f"assign_bench_raw_{os.getpid()}") as url:
        fleet = await seed_postgres(url, 1, args.slots)
        pool = await asyncpg.create_pool(url, min_size=args.servers * 2, max_size=args.servers * 2)
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO links (id, request_id, service_type, status, phase, priority, retry_count, "
                "max_retries, created_at, updated_at) SELECT gen_random_uuid(), $1, 'entity', 'queued', "
                "'create', 0, 0, 3, now(), now() FROM generate_series(1, $2)",
                fleet.request_id, args.links,
            )  # fmt: skip
        done = 0
        first: float | None = None

        async def server() -> None:
            nonlocal done, first
            while done < args.links:
                async with pool.acquire() as conn:
                    ids = [r[0] for r in await conn.fetch(RAW_CLAIM.format(n=args.slots))]
                    if first is None and ids:
                        first = time.perf_counter()
                    if not ids:
                        return
                    if batched:
                        await conn.execute(
                            "UPDATE links SET status = 'completed', completed_at = now() WHERE id = ANY($1)",
                            ids,
                        )
                    else:
                        for link_id in ids:
                            await conn.execute(
                                "UPDATE links SET status = 'completed', completed_at = now() WHERE id = $1",
                                link_id,
                            )
                done += len(ids)

        async with pool.acquire() as conn:
            pids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                )
            ]
        cpu0, own0 = common.cpu_seconds(pids), time.process_time()
        await asyncio.gather(*(server() for _ in range(args.servers)))
        assert first is not None
        run.seconds = time.perf_counter() - first
        run.db_cpu = common.cpu_seconds(pids) - cpu0
        run.bench_cpu = time.process_time() - own0
        await pool.close()
    return run


def raw_sqlite(name: str, batched: bool, args: argparse.Namespace) -> Run:
    run = Run(name, args.links)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/assign.db"
        common.cli("migrate", url=f"sqlite+aiosqlite:///{path}")
        fleet = seed_sqlite(path, 1, args.slots)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO links (id, request_id, service_type, status, phase, priority, retry_count, "
            "max_retries, created_at, updated_at) VALUES (?, ?, 'entity', 'queued', 'create', 0, 0, 3, "
            "datetime('now'), datetime('now'))",
            [(uuid.uuid4().hex, fleet.request_id.hex) for _ in range(args.links)],
        )
        db.execute("COMMIT")
        started = time.perf_counter()
        done = 0
        claim = RAW_CLAIM.replace(" FOR UPDATE SKIP LOCKED", "").replace("now()", "datetime('now')")
        while done < args.links:
            db.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in db.execute(claim.format(n=args.slots)).fetchall()]
            db.execute("COMMIT")
            if batched:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "UPDATE links SET status = 'completed', completed_at = datetime('now') WHERE id = ?",
                    [(i,) for i in ids],
                )
                db.execute("COMMIT")
            else:
                for link_id in ids:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute(
                        "UPDATE links SET status = 'completed', completed_at = datetime('now') WHERE id = ?",
                        (link_id,),
                    )
                    db.execute("COMMIT")
            done += len(ids)
        run.seconds = time.perf_counter() - started
        db.close()
    return run
