"""The dispatcher's assign rate against a hand-written claim statement and a client of the seed API.

All on PostgreSQL, in one run, on scratch databases made with ``assign.db.migrate.upgrade`` and
dropped at the end:

1. **Assign rate**: 1,000,000 links of which 200,000 ``pending``, 50 online tool servers. Each round
   gives the servers ``--slots`` free slots in all (the same number each), runs one method until
   the slots are full, then puts the links it placed back to ``pending`` and the servers back to
   full, so every round starts from the same state. The methods take turns, the order rotating:

   * ``reference``: one hand-written ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)``
     statement per 1,000 links over a plain asyncpg connection (literal ``LIMIT``, slot expansion
     capped at the batch size), repeated until nothing is placed. It honours no rate limit and no
     service types: the floor of what a claim costs on this schema.
   * ``assign_pending``: step 5 of the dispatcher alone.
   * ``tick``: the whole six-step ``tick(ctx)``.
   * ``tick, shipped limits``: the same with the shipped ``rate_limit`` settings (50 a day, 5
     minutes cooldown): one link per posting account per tick, so it places fewer.

   The other rounds set ``max_posts_per_day`` high and the cooldown to 0, so the dispatcher does
   the same placements as the reference (it still reads every account's usage).
2. **Seed API client**: a real ``assign serve --no-dispatcher`` and an httpx client that reads
   ``GET /servers/available`` and ``GET /links?status=pending&limit=1000`` and then sends one
   ``PUT /links/:id/assign`` per link (one at a time, and 8 in flight).
3. **Idle tick** (free slots none, ``pending`` links waiting, nothing stale or due) at 10,000 and
   1,000,000 links, blocks of 5 ticks on each database in turn; then again with free slots and no
   ``pending`` link. The live part of the fleet (servers, in-flight links, open requests, failed
   links waiting for their back-off) is the same at both sizes; the bigger table holds more
   history and a longer queue. Times on a shared machine wander; the shared buffers each
   statement touches (from its plan) are printed for both sizes too.
4. **Plans**: ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement of an idle tick and of a tick with
   work in every step, at 1,000,000 links, captured with ``auto_explain`` as the tick runs (the
   plans PostgreSQL really used, prepared statements included).

Run: ``python bench/dispatch.py [--links N] [--pending N] [--rounds N] [--slots N] [--port P]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import common
from dispatch_data import DB_BIG, DB_SMALL, create_database, fill_servers, load
from dispatch_measure import (
    assign_rounds,
    buffers_table,
    idle_table,
    measure_http,
    measure_idle,
    ms,
    print_plans,
)
from dispatch_work import capture_plans, make_work, slots_check

from assign.dispatcher import steps
from assign.services.context import Context


async def load_databases(args: argparse.Namespace) -> dict[str, str]:
    """Both databases made and loaded; their URLs by label (small first)."""
    print("loading ...", flush=True)
    t0 = time.perf_counter()
    big = await create_database(DB_BIG)
    small = await create_database(DB_SMALL)
    counts_big = await load(big, args.links, args.pending)
    counts_small = await load(small, args.small_links, args.small_links // 5)
    conn = await asyncpg.connect(big)
    print(await common.machine_line(conn))
    await conn.close()
    print(f"loaded in {time.perf_counter() - t0:.0f} s")
    print(f"{args.big_label}: {counts_big}\n{args.small_label}: {counts_small}")
    return {args.small_label: small, args.big_label: big}


async def assign_rate(args: argparse.Namespace, big: str) -> dict[str, float]:
    """The assign rounds and the seed API client: links/s by method, and as ratios."""
    print(f"\n## Assign rate: {args.pending} pending, {args.slots} free slots a round")
    seconds, placed = await assign_rounds(big, args.rounds, args.slots)
    rate = {
        m: common.median([n / s for n, s in zip(placed[m], seconds[m], strict=True)])
        for m in seconds
    }
    ref = rate["reference"]
    print(f"\n## Seed API client: {args.http_links} links a round over HTTP")
    http = await measure_http(big, args.http_rounds, args.http_links, args.port)
    http_rate = {k: common.median(v) for k, v in http.items()}
    rows = [
        [m, f"{common.median(placed[m]):.0f}", ms(common.median(seconds[m])),
         f"{rate[m]:,.0f}", f"{rate[m] / ref:.2f}"]
        for m in seconds
    ]  # fmt: skip
    rows += [
        [f"seed API client, {k}", str(args.http_links), "", f"{v:,.0f}", f"{v / ref:.3f}"]
        for k, v in http_rate.items()
        if k != "GET /healthz"
    ]
    print(f"\n## Assign rate at {args.big_label} links, medians of {args.rounds} rounds\n")
    print(common.table(["method", "links a round", "ms a round", "links/s", "÷ reference"], rows))
    print(
        f"\ntick ÷ reference = {rate['tick'] / ref:.2f} (target ≥ 0.5); "
        f"assign_pending ÷ reference = {rate['assign_pending'] / ref:.2f}; "
        f"tick ÷ seed client = {rate['tick'] / http_rate['1 in flight']:.1f}x one at a time, "
        f"{rate['tick'] / http_rate['8 in flight']:.1f}x 8 in flight (target ≥ 20x)\n"
        f"(GET /healthz one at a time meanwhile: {http_rate['GET /healthz']:,.0f} requests/s)"
    )
    return {
        "tick_vs_reference": rate["tick"] / ref,
        "tick_vs_seed_client": rate["tick"] / http_rate["1 in flight"],
        "tick_vs_seed_client_8": rate["tick"] / http_rate["8 in flight"],
    }


async def working_plans(big: str, label: str, idle_plans: list[str]) -> None:
    """The plans of an idle tick and of a tick with work in every step, at ``big``."""
    print("\n## Plans at", label)
    await make_work(big)
    holder: dict[str, Any] = {}

    async def working(ctx: Context) -> None:
        holder["report"] = await steps.tick(ctx)

    work_plans = await capture_plans(big, working)
    print_plans("idle tick", idle_plans)
    print(f"\nworking tick: {holder['report']}; {await slots_check(big)}")
    print_plans("working tick", work_plans)


async def empty_queues(urls: dict[str, str]) -> None:
    """No pending link left, retries not due, free slots on every server."""
    for url in urls.values():
        conn = await asyncpg.connect(url)
        await conn.execute("UPDATE links SET status = 'canceled' WHERE status = 'pending'")
        await common.sync_active_tasks(conn)
        await conn.execute(
            "UPDATE links SET retry_at = now() + interval '1 day'"
            " WHERE status = 'failed' AND retry_count < max_retries"
        )
        await fill_servers(conn, free=20)
        await conn.execute("VACUUM ANALYZE links")
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, float]:
    """Every part in turn, the tables printed; the ratios that have targets."""
    small_label, big_label = args.small_label, args.big_label
    urls = await load_databases(args)
    big = urls[big_label]
    print("\n## Idle tick: no free slot, pending links waiting, nothing stale or due")
    idle_full = await measure_idle(urls, args.idle_ticks)
    print(idle_table(idle_full, small_label, big_label))
    idle_plans = {label: await capture_plans(url, steps.tick) for label, url in urls.items()}
    print("\nShared buffers (hit + read) of each statement of one idle tick\n")
    print(buffers_table(idle_plans, small_label, big_label))
    summary = await assign_rate(args, big)
    await working_plans(big, big_label, idle_plans[big_label])
    print("\n## Idle tick: free slots, no pending link")
    await empty_queues(urls)
    idle_empty = await measure_idle(urls, args.idle_ticks)
    print(idle_table(idle_empty, small_label, big_label))
    full = [common.median(idle_full[x]["tick"]) for x in (big_label, small_label)]
    empty = [common.median(idle_empty[x]["tick"]) for x in (big_label, small_label)]
    summary["idle_1m_vs_10k"] = full[0] / full[1]
    summary["idle_1m_vs_10k_nothing_pending"] = empty[0] / empty[1]
    print("\n## Summary")
    for line, _ in verdicts(summary):
        print(line)
    return summary


async def main(
    *,
    links: int = 1_000_000,
    pending: int = 200_000,
    small_links: int = 10_000,
    rounds: int = 9,
    slots: int = 10_000,
    http_rounds: int = 3,
    http_links: int = 1000,
    idle_ticks: int = 40,
    port: int = 8310,
    keep: bool = False,
) -> dict[str, float]:
    """Run everything, print the tables; the ratios that have targets."""
    args = argparse.Namespace(
        links=links,
        pending=pending,
        small_links=small_links,
        rounds=rounds,
        slots=slots,
        http_rounds=http_rounds,
        http_links=http_links,
        idle_ticks=idle_ticks,
        port=port,
        keep=keep,
        big_label=f"{links // 1000}k" if links < 1_000_000 else f"{links / 1e6:g}M",
        small_label=f"{small_links // 1000}k",
    )
    try:
        return await run(args)
    finally:
        if not keep:
            await common.drop_database(DB_BIG)
            await common.drop_database(DB_SMALL)


def verdicts(summary: dict[str, float]) -> list[tuple[str, bool]]:
    """(line, target met) for each dispatcher figure with a target."""
    checks = [
        ("tick_vs_reference", "dispatcher tick ÷ hand-written claim", 0.5, "≥"),
        ("tick_vs_seed_client", "dispatcher tick ÷ seed API client (1 in flight)", 20, "≥"),
        ("tick_vs_seed_client_8", "dispatcher tick ÷ seed API client (8 in flight)", 20, "≥"),
        ("idle_1m_vs_10k", "idle tick at 1M ÷ at 10k links (servers full)", 1.5, "≤"),
        ("idle_1m_vs_10k_nothing_pending", "idle tick at 1M ÷ at 10k (nothing pending)", 1.5, "≤"),
    ]
    out = []
    for key, label, target, sense in checks:
        value = summary[key]
        ok = value >= target if sense == "≥" else value <= target
        out.append(
            (f"{label}: {value:.2f} (target {sense} {target:g}): {'meets' if ok else 'MISSES'}", ok)
        )
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=200_000)
    parser.add_argument("--small-links", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9, help="rounds of each assign method")
    parser.add_argument("--slots", type=int, default=10_000, help="free slots a round, all servers")
    parser.add_argument("--http-rounds", type=int, default=3)
    parser.add_argument("--http-links", type=int, default=1000, help="links a seed-client round")
    parser.add_argument(
        "--idle-ticks", type=int, default=40, help="counted idle ticks per database"
    )
    parser.add_argument("--port", type=int, default=8310, help="8300-8349")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    asyncio.run(main(**vars(parser.parse_args())))


if __name__ == "__main__":
    cli()
