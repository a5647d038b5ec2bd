"""The measuring loops of the dispatcher benchmark (bench/dispatch.py) and their tables."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import common
import httpx
from dispatch_data import N_SERVERS, fill_servers, make_context, set_limits, undo_round
from dispatch_work import run_reference, run_step5, run_tick, seed_client, summarize_plan

from assign.dispatcher import steps

# --- running -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def assign_rounds(
    url: str, rounds: int, slots: int
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds and links placed per round, by method."""
    ctx = make_context(url)
    pg = await asyncpg.connect(url, server_settings={"jit": "off"})
    admin = await asyncpg.connect(url)
    free = slots // N_SERVERS
    methods: dict[str, Callable[[], Awaitable[int]]] = {
        "reference": lambda: run_reference(pg),
        "assign_pending": lambda: run_step5(ctx),
        "tick": lambda: run_tick(ctx),
        "tick, shipped limits": lambda: run_tick(ctx),
    }
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    placed: dict[str, list[int]] = {m: [] for m in methods}
    names = list(methods)
    try:
        for r in range(rounds + 1):  # round 0 warms caches and prepared statements, not counted
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                if name == "tick, shipped limits":
                    await set_limits(admin, per_day=50, cooldown=5)
                await fill_servers(admin, free=free)
                since = datetime.now(UTC) - timedelta(seconds=1)
                started = time.perf_counter()
                n = await methods[name]()
                took = time.perf_counter() - started
                undone = await undo_round(admin, since)
                await set_limits(admin, per_day=1000000, cooldown=0)
                if undone != n:
                    raise RuntimeError(f"{name}: placed {n} but {undone} were queued")
                if r:
                    seconds[name].append(took)
                    placed[name].append(n)
                print(f"  round {r} {name:22s} {n:6d} links {ms(took):>8s} ms", flush=True)
    finally:
        await pg.close()
        await admin.close()
        await ctx.db.dispose()
    return seconds, placed


async def measure_http(url: str, rounds: int, per_round: int, port: int) -> dict[str, list[float]]:
    """Links/s of the seed API client per round, one request at a time and 8 in flight; and
    requests/s of ``GET /healthz`` one at a time, for scale."""
    key = common.worker_key(url, "bench-dispatch-client")
    admin = await asyncpg.connect(url)
    rates: dict[str, list[float]] = {"1 in flight": [], "8 in flight": []}
    healthz: list[float] = []
    try:
        with common.ApiServer(url, port) as api:
            async with httpx.AsyncClient(
                base_url=api.base, headers={"X-API-Key": key}, timeout=60
            ) as client:
                await seed_client(client, 10, 1)  # warm-up
                await undo_round(admin, datetime.now(UTC) - timedelta(minutes=5))
                for r in range(rounds):
                    for name in list(rates) if r % 2 == 0 else list(rates)[::-1]:
                        await fill_servers(admin, free=math.ceil(per_round / N_SERVERS))
                        since = datetime.now(UTC) - timedelta(seconds=1)
                        started = time.perf_counter()
                        n = await seed_client(client, per_round, 1 if name[0] == "1" else 8)
                        took = time.perf_counter() - started
                        await undo_round(admin, since)
                        rates[name].append(n / took)
                        print(
                            f"  round {r} seed client, {name}: {n} links {took:.2f} s", flush=True
                        )
                    # what one HTTP round trip costs on this machine now, no database involved
                    started = time.perf_counter()
                    for _ in range(300):
                        await client.get("/healthz")
                    healthz.append(300 / (time.perf_counter() - started))
    finally:
        await admin.close()
    return {**rates, "GET /healthz": healthz}


#: consecutive ticks on one database before the other takes its turn
IDLE_BLOCK = 5


async def measure_idle(urls: dict[str, str], ticks: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of whole ticks and of each step, per database: blocks of IDLE_BLOCK ticks in a
    row (as a dispatcher ticks on its one database), the databases taking turns, the order
    alternating; a first block on each is not counted."""
    ctxs = {label: make_context(url) for label, url in urls.items()}
    out: dict[str, dict[str, list[float]]] = {
        label: {"tick": [], **{s.__name__: [] for s in steps.STEPS}} for label in urls
    }
    try:
        for block in range(math.ceil(ticks / IDLE_BLOCK) + 1):
            for label, ctx in ctxs.items() if block % 2 == 0 else reversed(ctxs.items()):
                for _ in range(IDLE_BLOCK):
                    started = time.perf_counter()
                    report = await steps.tick(ctx)
                    took = time.perf_counter() - started
                    if report.busy or report.exhausted or report.stale_failed or report.finished:
                        raise RuntimeError(f"{label}: the idle tick did work: {report}")
                    # each step again, timed alone (the tick is these six in order)
                    now = ctx.clock.now()
                    step_times = {}
                    for step in steps.STEPS:
                        t0 = time.perf_counter()
                        await step(ctx, now, steps.TickReport())
                        step_times[step.__name__] = time.perf_counter() - t0
                    if block:
                        out[label]["tick"].append(took)
                        for name, t in step_times.items():
                            out[label][name].append(t)
    finally:
        for ctx in ctxs.values():
            await ctx.db.dispose()
    return out


def idle_table(result: dict[str, dict[str, list[float]]], small: str, big: str) -> str:
    rows = []
    for name in result[small]:
        a = common.median(result[small][name])
        b = common.median(result[big][name])
        rows.append([name, ms(a), ms(b), f"{b / a:.2f}"])
    return common.table(["tick / step", f"{small} ms", f"{big} ms", "ratio"], rows)


def plan_buffers(text: str) -> int:
    """Shared buffers hit or read by the top node of one auto_explain plan."""
    plan = text.split("(cost=", 1)[-1]
    top = re.search(r"Buffers: shared ([^\n]*)", plan)
    if not top:
        return 0
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", top.group(1)))


def buffers_table(plans: dict[str, list[str]], small: str, big: str) -> str:
    rows = []
    for a, b in zip(plans[small], plans[big], strict=False):
        statement = summarize_plan(b)[0][:70]
        x, y = plan_buffers(a), plan_buffers(b)
        rows.append([statement, x, y, f"{y / x:.2f}" if x else "-"])
    total = [sum(plan_buffers(p) for p in plans[label]) for label in (small, big)]
    rows.append(["all statements", *total, f"{total[1] / max(total[0], 1):.2f}"])
    return common.table(["statement", small, big, "ratio"], rows)


def print_plans(title: str, plans: list[str]) -> None:
    print(f"\n### {title}: {len(plans)} statements\n")
    rows = [summarize_plan(p) for p in plans]
    print(common.table(["statement", "indexes", "buffers (top node)", "ms"], rows))
    for p in plans:
        print("\n" + p.rstrip())
