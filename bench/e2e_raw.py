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


#: the placement step of Assign's life cycle, for the ``placed`` ceilings: a batch of pending
#: links queued on a server (``{server}``: its id, ``{now}``: the engine's clock)
RAW_PLACE = (
    "UPDATE links SET status = 'queued', server_id = {server}, assigned_at = {now}, "
    "updated_at = {now} WHERE id IN (SELECT id FROM links WHERE status = 'pending' "
    "ORDER BY priority DESC, created_at LIMIT {n}{lock})"
)


async def raw_pg(
    name: str, batched: bool, args: argparse.Namespace, *, placed: bool = False
) -> Run:
    """``placed``: the links start pending and each batch is first queued on the server, as
    Assign's dispatcher does (three transactions a batch; batched only)."""
    run = Run(name, args.links)
    async with common.scratch_database(f"assign_bench_raw_{os.getpid()}") as url:
        fleet = await seed_postgres(url, 1, args.slots)
        pool = await asyncpg.create_pool(url, min_size=args.servers * 2, max_size=args.servers * 2)
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO links (id, request_id, service_type, status, phase, priority, retry_count, "
                "max_retries, created_at, updated_at) SELECT gen_random_uuid(), $1, 'entity', $3, "
                "'create', 0, 0, 3, now(), now() FROM generate_series(1, $2)",
                fleet.request_id, args.links, "pending" if placed else "queued",
            )  # fmt: skip
            server_id = await conn.fetchval("SELECT id FROM servers LIMIT 1")
        place = RAW_PLACE.format(
            server="$1", now="now()", n=args.slots, lock=" FOR UPDATE SKIP LOCKED"
        )
        done = 0
        first: float | None = None

        async def server() -> None:
            nonlocal done, first
            while done < args.links:
                async with pool.acquire() as conn:
                    if placed:
                        await conn.execute(place, server_id)
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


def raw_sqlite(name: str, batched: bool, args: argparse.Namespace, *, placed: bool = False) -> Run:
    """``placed`` as for :func:`raw_pg`."""
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
            "max_retries, created_at, updated_at) VALUES (?, ?, 'entity', ?, 'create', 0, 0, 3, "
            "datetime('now'), datetime('now'))",
            [
                (uuid.uuid4().hex, fleet.request_id.hex, "pending" if placed else "queued")
                for _ in range(args.links)
            ],
        )
        db.execute("COMMIT")
        (server_id,) = db.execute("SELECT id FROM servers LIMIT 1").fetchone()
        place = RAW_PLACE.format(server="?", now="datetime('now')", n=args.slots, lock="")
        started = time.perf_counter()
        done = 0
        claim = RAW_CLAIM.replace(" FOR UPDATE SKIP LOCKED", "").replace("now()", "datetime('now')")
        while done < args.links:
            if placed:
                db.execute("BEGIN IMMEDIATE")
                db.execute(place, (server_id,))
                db.execute("COMMIT")
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
