"""What the history triggers on ``links`` cost (attempts, throughput, link counts; migration 0005).

One PostgreSQL scratch database with 1,000,000 links (``common.generate_links``), 300 requests
and 50 online tool servers. The same workloads run with the triggers present and with them
disabled (``ALTER TABLE ... DISABLE TRIGGER``), in the same run, taking turns (the order alternating each round); every workload runs in
a transaction that is rolled back, so each round starts from the same rows. Medians of wall time
and of PostgreSQL CPU (the backends' user+system time from /proc), and the ratio present/dropped:

* ``bulk insert``: 5,000 links in one COPY (as ``POST /links/bulk`` writes them).
* ``claim``: 1,000 queued links (of 5 requests) of one server -> running (``claims_repo.claim_links``, the tool
  API's claim statement), plus the server update.
* ``bulk results``: 1,000 running links of one server -> 900 completed, 100 failed, in one
  ``UPDATE ... FROM unnest(...)`` and the server's ``active_tasks`` (a batch of results); the
  links of 5 requests (a server's work comes from the head of the queue), and of 280 (the worst
  case for the per-request counts and throughput). Each ends the link's current attempt.
* ``tick, 1,000 placed``: the whole ``tick(ctx)`` with 1,000 free slots over the 50 servers.
* ``tick, idle``: the whole tick with no free slot (200,000 links pending).
* ``(committed)``: the operations as their callers run them, each committed, with an untimed
  set-up giving each round the same work (``history_committed.py``): ``claims.claim`` of 1,000
  queued links, ``tool.report_results`` of those 1,000 (900 completed, 100 failed) and of 1,000
  links of any request, and a ``tick`` placing 1,000 links.

Then the plans of the trigger's statement on a claim and on a batch of results, with
``auto_explain.log_nested_statements``.

Run: ``python bench/history_cost.py [--rounds N] [--links N] [--keep]``.
The workloads and their rolled-back transactions are in ``history_workloads.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime

import asyncpg
import common
from history_committed import WORKLOADS as COMMITTED
from history_workloads import RESULTS, Fixture
from history_workloads import WORKLOADS as ROLLED_BACK

from assign.app import build_context
from assign.services.context import Context
from assign.settings import Settings

#: the rolled-back statements, then the committed operations
WORKLOADS = {**ROLLED_BACK, **COMMITTED}

TRIGGERS = ("links_history_update", "links_history_insert", "links_history_delete")


async def set_triggers(conn: asyncpg.Connection, present: bool) -> None:
    """Enable or disable the history triggers (the functions stay, with their cached plans)."""
    action = "ENABLE" if present else "DISABLE"
    for name in TRIGGERS:
        await conn.execute(f"ALTER TABLE links {action} TRIGGER {name}")


def make_context(url: str) -> Context:
    return build_context(
        Settings(
            database_url=url,
            secret_key=common.SECRET,
            stale_timeout_minutes=240,  # the generated running links stay fresh
            server_timeout_minutes=60,
            db_pool_size=4,
            log_json=False,
        )
    )


async def backend_cpu(admin: asyncpg.Connection, database: str) -> float:
    pids = [
        r["pid"]
        for r in await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    ]
    return common.cpu_seconds(pids)


#: seconds measured, by (workload, whether the triggers were present)
Samples = dict[tuple[str, bool], list[float]]


# --- set-up --------------------------------------------------------------------------------------


async def prepare(url: str, links: int) -> Fixture:
    conn = await asyncpg.connect(url)
    try:
        requests, servers = await common.add_fleet(conn, n_requests=300, n_servers=50)
        await common.generate_links(conn, "links", links, servers)
        claimer, reporter, spread = servers[0], servers[1], servers[2]
        few = [r[0] for r in requests[:5]]
        # one server with 1,000 queued links to claim, another with 1,000 running to report,
        # both of 5 requests (a server's work comes from the head of the queue: a few
        # requests); a third with 1,000 running links of any of the 300 requests (the worst
        # case for the per-request counts). Each result ends the link's current attempt (its
        # row is inserted then, migration 0011).
        pick = (
            "SELECT id FROM links WHERE status = 'pending' AND request_id = ANY($2::uuid[]) "
            "ORDER BY id LIMIT 1000"
        )
        everyone = [r[0] for r in requests]
        for server_id, of in ((claimer, few), (reporter, few), (spread, everyone)):
            await conn.execute(
                "UPDATE links SET status = 'queued', server_id = $1, assigned_at = now() "
                f"WHERE id IN ({pick})",
                server_id,
                of,
            )
        for server_id in (reporter, spread):
            await conn.execute(
                "UPDATE links SET status = 'running', started_at = now(), updated_at = now() "
                "WHERE server_id = $1 AND status = 'queued'",
                server_id,
            )
        await common.sync_active_tasks(conn)
        await conn.execute(
            "UPDATE settings SET value = '1000000' WHERE \"group\" = 'rate_limit' "
            "AND key = 'max_posts_per_day'"
        )
        await conn.execute(
            "UPDATE settings SET value = '0' WHERE \"group\" = 'rate_limit' "
            "AND key = 'cooldown_minutes'"
        )
        await conn.execute("UPDATE servers SET last_health_check = now()")
        await conn.execute("VACUUM ANALYZE")
        fx = Fixture(requests[0][0], claimer, reporter)
        fx.spread = spread
        fx.flow, fx.flow_spread = servers[3], servers[4]
        for server_id, into in ((reporter, fx.running), (spread, fx.running_spread)):
            into.extend(
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM links WHERE server_id = $1 AND status = 'running' ORDER BY id",
                    server_id,
                )
            )
        assert fx.running and fx.running_spread
        return fx
    finally:
        await conn.close()


async def plans(url: str, fx: Fixture) -> list[str]:
    """auto_explain's plans of the statements a claim and a batch of results run, the
    trigger's own included (nested statements)."""
    sink: list[str] = []
    conn = await asyncpg.connect(url)
    conn.add_log_listener(lambda _c, message: sink.append(message.message))
    try:
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
            "SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; "
            "SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice"
        )
        tr = conn.transaction()
        await tr.start()
        now = datetime.now(UTC)
        await conn.execute(
            "UPDATE links SET status = 'running', started_at = $2, updated_at = $2 "
            "WHERE server_id = $1 AND status = 'queued'",
            fx.claimer,
            now,
        )
        ids = fx.running
        await conn.execute(
            RESULTS,
            ids,
            ["completed"] * len(ids),
            now,
            [None] * len(ids),
            ["https://p.example/x"] * len(ids),
            fx.reporter,
        )
        await tr.rollback()
        await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return sink


async def measure(
    admin: asyncpg.Connection, ctx: Context, fx: Fixture, database: str, rounds: int
) -> tuple[Samples, Samples]:
    """Every workload warmed up both ways, then ``rounds`` rounds with the triggers present and
    dropped taking turns; (wall seconds, PostgreSQL CPU seconds) by (workload, present)."""
    times: Samples = {}
    cpu: Samples = {}
    for present in (True, False):  # warm-up, both ways (a committed claim, then its results)
        await set_triggers(admin, present)
        for workload in WORKLOADS.values():
            await workload(ctx, fx)
    for round_ in range(rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for present in order:
            await set_triggers(admin, present)
            for label, workload in WORKLOADS.items():
                before = await backend_cpu(admin, database)
                seconds = await workload(ctx, fx)
                used = await backend_cpu(admin, database) - before
                times.setdefault((label, present), []).append(seconds)
                cpu.setdefault((label, present), []).append(used)
    await set_triggers(admin, True)
    return times, cpu


def results_table(times: Samples, cpu: Samples) -> str:
    """The medians of each workload, dropped against present."""
    rows = []
    for label in WORKLOADS:
        on, off = (common.median(times[(label, p)]) for p in (True, False))
        cpu_on, cpu_off = (common.median(cpu[(label, p)]) for p in (True, False))
        rows.append(
            [
                label,
                f"{off * 1000:.1f}",
                f"{on * 1000:.1f}",
                f"**{on / off:.2f}**",
                f"{cpu_off * 1000:.0f}",
                f"{cpu_on * 1000:.0f}",
            ]
        )
    return common.table(
        [
            "workload",
            "dropped ms",
            "present ms",
            "present/dropped",
            "PG CPU ms dropped",
            "PG CPU ms present",
        ],
        rows,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    name = f"assign_bench_history_{os.getpid()}"
    async with common.scratch_database(name, keep=args.keep) as url:
        started = time.perf_counter()
        fx = await prepare(url, args.links)
        print(f"set-up: {args.links:,} links in {time.perf_counter() - started:.0f} s")
        admin = await asyncpg.connect(url)
        print(await common.machine_line(admin))
        ctx = make_context(url)
        try:
            times, cpu = await measure(admin, ctx, fx, name, args.rounds)
            print(f"\nmedians of {args.rounds} rounds, triggers dropped vs present, same run\n")
            print(results_table(times, cpu))
            print("\nplans (auto_explain, nested statements) of a claim and a batch of results:\n")
            for message in await plans(url, fx):
                print(message.strip() + "\n")
        finally:
            await ctx.db.dispose()
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
