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
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import common
import httpx
from sqlalchemy import event
from sqlalchemy.util import await_only

from assign.app import build_context
from assign.db.migrate import upgrade
from assign.dispatcher import steps
from assign.services.context import Context
from assign.settings import Settings, normalize_database_url

DB_BIG = "assign_bench_dispatch"
DB_SMALL = "assign_bench_dispatch_10k"
N_SERVERS = 50
OPEN_REQUESTS = 200
#: the live part of the fleet, the same at every table size
LIVE = (("queued", 1000), ("running", 3000), ("connect", 200), ("failed", 300))
#: links per closed (historical) request
HISTORY_PER_REQUEST = 500
REFERENCE_BATCH = 1000
WORKER = "/api/v1/worker"

# --- data ----------------------------------------------------------------------------------

#: k = 0 is the newest link. The newest ``w`` links are the live part, the pending queue and some
#: recent completions, of the open requests, mixed by a permutation (k * mult mod w); the older
#: ones are history of closed requests: completed, 8% canceled, 0.1% failed with retries left.
GENERATE = """
INSERT INTO links (
    id, request_id, service_type, server_id, site_id, site_name, email, username, password_enc,
    about, status, phase, priority, retry_count, max_retries, error, profile_url, post_url,
    details, retry_at, assigned_at, started_at, completed_at, created_at, updated_at
)
WITH g AS (
    SELECT k, CASE WHEN k < $2::int THEN (k::bigint * $3::int % $2::int)::int END AS j,
           k - $2::int AS h
    FROM generate_series($1::int - 1, 0, -1) AS k
), s AS (
    SELECT k, h,
           CASE WHEN j IS NULL THEN
                CASE WHEN h % 1000 < 80 THEN 'canceled' WHEN h % 1000 = 999 THEN 'failed'
                     ELSE 'completed' END
                WHEN j < ($7::int[])[1] THEN 'queued' WHEN j < ($7::int[])[2] THEN 'running'
                WHEN j < ($7::int[])[3] THEN 'connect' WHEN j < ($7::int[])[4] THEN 'failed'
                WHEN j < ($7::int[])[5] THEN 'pending' ELSE 'completed' END AS status,
           CASE WHEN j IS NULL THEN ($5::uuid[])[1 + (h / {per_request}) % cardinality($5::uuid[])]
                ELSE ($4::uuid[])[1 + k % cardinality($4::uuid[])] END AS request_id,
           $6::timestamptz - make_interval(secs => k * 2.5) AS created
    FROM g
)
SELECT gen_random_uuid(), s.request_id, r.service_type,
       CASE WHEN s.status <> 'pending' THEN ($8::uuid[])[1 + s.k % cardinality($8::uuid[])] END,
       md5('site' || s.k % 200)::uuid, 'site-' || s.k % 200,
       CASE WHEN s.k % 5 <> 0 THEN 'account' || s.k % 4999 || '@example.com' END,
       'user' || s.k % 4999,
       decode(md5(s.k::text) || md5(s.k::text || 'x') || '0102030405060708', 'hex'),
       'About this profile: ' || repeat('link building ', 10),
       s.status, CASE WHEN s.status = 'connect' THEN 'connect' ELSE 'create' END, r.priority,
       CASE WHEN s.status = 'failed' THEN CASE WHEN s.h >= 0 THEN 1 ELSE s.k % 3 END ELSE 0 END, 3,
       CASE WHEN s.status = 'failed' THEN 'captcha not solved' END,
       CASE WHEN s.status IN ('completed', 'connect')
            THEN 'https://site-' || s.k % 200 || '.example/u/' || s.k END,
       CASE WHEN s.status = 'completed' AND s.k % 2 = 0
            THEN 'https://site-' || s.k % 200 || '.example/p/' || s.k END,
       jsonb_build_object('keyword', 'keyword ' || s.k % 1000),
       CASE WHEN s.status = 'failed' AND s.h < 0 THEN now() + interval '1 day' END,
       CASE WHEN s.status <> 'pending' THEN s.created + interval '1 minute' END,
       CASE WHEN s.status = 'running' THEN $6::timestamptz + make_interval(secs => s.k % 300)
            WHEN s.status IN ('completed', 'connect', 'failed')
            THEN s.created + interval '2 minutes' END,
       CASE WHEN s.status IN ('completed', 'connect', 'failed')
            THEN s.created + interval '5 minutes' END,
       s.created, s.created
FROM s JOIN requests r ON r.id = s.request_id
""".replace("{per_request}", str(HISTORY_PER_REQUEST))


def _coprime(w: int) -> int:
    for mult in (7919, 7907, 7901, 7883, 104729):
        if math.gcd(mult, w) == 1:
            return mult
    return 1


async def create_database(name: str) -> str:
    """A fresh database ``name`` migrated to the newest schema; its URL."""
    url = await common.create_database(name)
    await asyncio.to_thread(upgrade, normalize_database_url(url))
    return url


async def load(url: str, n_links: int, n_pending: int) -> dict[str, int]:
    """Servers, requests and ``n_links`` links; the servers left full. Counts by status."""
    live = sum(n for _, n in LIVE)
    w = min(n_links, live + n_pending + max(n_pending // 4, 1000))
    history = n_links - w
    base = datetime.now(UTC) - timedelta(minutes=10)
    conn = await asyncpg.connect(url)
    try:
        kinds = common.SERVICE_TYPES
        open_ids = [uuid.uuid4() for _ in range(OPEN_REQUESTS)]
        closed_ids = [uuid.uuid4() for _ in range(max(1, math.ceil(history / HISTORY_PER_REQUEST)))]
        records = [
            (
                rid,
                kinds[i % len(kinds)],
                f"campaign {i}",
                status,
                "normal",
                (i * 7) % 6,
                base - timedelta(days=31),
                None if status == "running" else base,
                base,
                base,
            )
            for status, ids in (("running", open_ids), ("completed", closed_ids))
            for i, rid in enumerate(ids)
        ]
        await conn.copy_records_to_table(
            "requests",
            records=records,
            columns=(
                "id",
                "service_type",
                "name",
                "status",
                "type_request",
                "priority",
                "started_at",
                "completed_at",
                "created_at",
                "updated_at",
            ),
        )
        server_ids = [uuid.uuid4() for _ in range(N_SERVERS)]
        await conn.copy_records_to_table(
            "servers",
            records=[
                (
                    sid,
                    f"tool-{i:03d}",
                    "tool",
                    "online",
                    0,
                    i % 4,
                    "[]",
                    uuid.uuid4().hex * 2,
                    base,
                    base,
                )
                for i, sid in enumerate(server_ids)
            ],
            columns=(
                "id",
                "name",
                "service",
                "status",
                "max_threads",
                "priority",
                "service_types",
                "api_key_hash",
                "created_at",
                "updated_at",
            ),
        )
        bounds, total = [], 0
        for _, n in (*LIVE, ("pending", n_pending)):
            total += n
            bounds.append(total)
        indexes = await common.secondary_indexes(conn, "links")
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
        await conn.execute("SET session_replication_role = replica")  # rows refer to real parents
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute(
            GENERATE, n_links, w, _coprime(w), open_ids, closed_ids, base, bounds, server_ids
        )
        await conn.execute("RESET session_replication_role")
        for _, definition in indexes:
            await conn.execute(definition)
        await conn.execute(
            """INSERT INTO settings ("group", key, value, updated_at) VALUES
               ('rate_limit', 'max_posts_per_day', '1000000', now()),
               ('rate_limit', 'cooldown_minutes', '0', now())
               ON CONFLICT ("group", key) DO UPDATE SET value = excluded.value"""
        )
        await common.sync_active_tasks(conn)
        await fill_servers(conn, free=0)
        for name in ("links", "requests", "servers"):
            await conn.execute(f"VACUUM ANALYZE {name}")
        rows = await conn.fetch("SELECT status, count(*) FROM links GROUP BY status")
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


async def fill_servers(conn: asyncpg.Connection, *, free: int) -> None:
    """Every tool server online, heartbeat now, with ``free`` free slots."""
    await conn.execute(
        "UPDATE servers SET status = 'online', last_health_check = now(), "
        "max_threads = active_tasks + $1 WHERE service <> 'assign'",
        free,
    )


async def set_limits(conn: asyncpg.Connection, *, per_day: int, cooldown: float) -> None:
    await conn.execute(
        """UPDATE settings SET value = CASE key WHEN 'max_posts_per_day' THEN $1 ELSE $2 END
           WHERE "group" = 'rate_limit'""",
        str(per_day),
        str(cooldown),
    )


async def undo_round(conn: asyncpg.Connection, since: datetime) -> int:
    """Links queued since ``since`` back to ``pending``, servers full again; how many."""
    moved = await conn.fetchval(
        """WITH moved AS (
               UPDATE links SET status = 'pending', server_id = NULL, assigned_at = NULL,
                                updated_at = created_at
               WHERE status = 'queued' AND assigned_at >= $1 RETURNING 1)
           SELECT count(*) FROM moved""",
        since,
    )
    await common.sync_active_tasks(conn)
    await fill_servers(conn, free=0)
    await conn.execute("VACUUM links")
    return int(moved)


def make_context(url: str, **overrides: Any) -> Context:
    settings = Settings(
        database_url=url,
        secret_key=common.SECRET,
        stale_timeout_minutes=240,  # the generated running links stay fresh for the whole run
        server_timeout_minutes=60,
        db_pool_size=4,
        log_json=False,
        **overrides,
    )
    return build_context(settings)


# --- the methods -------------------------------------------------------------------------

#: Reference claim: up to 1,000 pending links in dispatch order, paired with free slots taken
#: round-robin over the servers (priority first), expansion capped at the batch size.
REFERENCE = """
WITH slots AS (
    SELECT f.id AS server_id, row_number() OVER (ORDER BY f.k, f.priority DESC, f.id) AS rn
    FROM (SELECT s.id, s.priority, g.k
          FROM servers s
          CROSS JOIN LATERAL generate_series(1, LEAST(s.max_threads - s.active_tasks, {n})) AS g(k)
          WHERE s.status = 'online' AND s.service <> 'assign' AND s.active_tasks < s.max_threads
          ORDER BY g.k, s.priority DESC, s.id
          LIMIT {n}) AS f
), picked AS (
    SELECT p.id, row_number() OVER (ORDER BY p.priority DESC, p.created_at) AS rn
    FROM (SELECT id, priority, created_at FROM links
          WHERE status = 'pending' AND server_id IS NULL
          ORDER BY priority DESC, created_at
          LIMIT {n}
          FOR UPDATE SKIP LOCKED) AS p
), moved AS (
    UPDATE links SET status = 'queued', server_id = x.server_id, assigned_at = now(),
                     updated_at = now()
    FROM (SELECT picked.id, slots.server_id FROM picked JOIN slots USING (rn)) AS x
    WHERE links.id = x.id
    RETURNING links.server_id
), counted AS (
    UPDATE servers SET active_tasks = servers.active_tasks + c.n
    FROM (SELECT server_id, count(*) AS n FROM moved GROUP BY server_id) AS c
    WHERE servers.id = c.server_id
    RETURNING c.n
)
SELECT coalesce(sum(n), 0)::int FROM counted
""".replace("{n}", str(REFERENCE_BATCH))


async def run_reference(conn: asyncpg.Connection) -> int:
    placed = 0
    while True:
        n = await conn.fetchval(REFERENCE)
        placed += n
        if n == 0:
            return placed


async def run_step5(ctx: Context) -> int:
    report = steps.TickReport()
    await steps.assign_pending(ctx, ctx.clock.now(), report)
    return report.assigned


async def run_tick(ctx: Context) -> int:
    return (await steps.tick(ctx)).assigned


# --- the seed API client ---------------------------------------------------------------------


async def seed_client(client: httpx.AsyncClient, want: int, in_flight: int) -> int:
    """Place ``want`` links as an assign service using only the seed API would; how many."""
    servers = (await client.get(f"{WORKER}/servers/available")).json()["data"]
    ring = [s["id"] for s in servers for _ in range(s["avail_slots"])]
    ring = [ring[i] for i in sorted(range(len(ring)), key=lambda i: i % max(1, len(servers)))]
    page = await client.get(f"{WORKER}/links", params={"status": "pending", "limit": want})
    todo = list(zip([x["id"] for x in page.json()["data"]], ring, strict=False))
    placed = 0
    gate = asyncio.Semaphore(in_flight)

    async def assign(link_id: str, server_id: str) -> None:
        nonlocal placed
        async with gate:
            r = await client.put(f"{WORKER}/links/{link_id}/assign", json={"server_id": server_id})
        placed += r.status_code == 200

    if in_flight == 1:
        for link_id, server_id in todo:
            await assign(link_id, server_id)
    else:
        await asyncio.gather(*(assign(a, b) for a, b in todo))
    return placed


# --- plans -----------------------------------------------------------------------------------


def explaining_context(url: str, sink: list[str]) -> Context:
    """A context whose connections report the plan of every statement they run (auto_explain
    at NOTICE level, analysed, with buffers), appended to ``sink``."""
    ctx = make_context(url)

    @event.listens_for(ctx.db.engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        raw: asyncpg.Connection = dbapi_conn.driver_connection
        raw.add_log_listener(lambda _c, message: sink.append(message.message))
        await_only(
            raw.execute(
                "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
                "SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; "
                "SET auto_explain.log_level = notice"
            )
        )

    return ctx


def summarize_plan(text: str) -> list[str]:
    """[statement, scans, buffers of the top node, ms] of one auto_explain message."""
    lines = text.splitlines()
    top = next((i for i, line in enumerate(lines) if "(cost=" in line), len(lines))
    query = " ".join(" ".join(lines[1:top]).replace("Query Text:", "").split())
    plan = "\n".join(lines[top:])
    used = sorted(set(re.findall(r"Scan(?: Backward)? using (\w+)", plan)))
    used += sorted(set(re.findall(r"Bitmap Index Scan on (\w+)", plan)) - set(used))
    used += sorted({f"seq {t}" for t in re.findall(r"Seq Scan on (\w+)", plan)})
    buffers = re.search(r"Buffers: shared ([^\n]*)", plan)
    duration = re.search(r"duration: ([\d.]+) ms", lines[0] if lines else "")
    return [
        query[:100] + ("..." if len(query) > 100 else ""),
        ", ".join(used) or "-",
        buffers.group(1) if buffers else "-",
        duration.group(1) if duration else "-",
    ]


async def capture_plans(url: str, work: Callable[[Context], Awaitable[Any]]) -> list[str]:
    sink: list[str] = []
    ctx = explaining_context(url, sink)
    try:
        await work(ctx)
        await asyncio.sleep(0.2)  # log messages are delivered after their statement
    finally:
        await ctx.db.dispose()
    # asyncpg's own type introspection and session set-up are not the tick's
    return [m for m in sink if "plan:" in m and "typeinfo_tree" not in m and "set_config(" not in m]


async def make_work(url: str) -> None:
    """Something for every step of the next tick at 1M: a silent server, stale links, retries
    due, exhausted links, 1,000 free slots, a request to start and one to close."""
    conn = await asyncpg.connect(url)
    try:
        await fill_servers(conn, free=20)
        await conn.execute(
            """UPDATE servers SET last_health_check = now() - interval '2 hours'
               WHERE id = (SELECT id FROM servers WHERE service <> 'assign'
                           ORDER BY name LIMIT 1)"""
        )
        await conn.execute(
            """UPDATE links SET started_at = now() - interval '1 day'
               WHERE id IN (SELECT id FROM links WHERE status = 'running' ORDER BY id LIMIT 100)"""
        )
        await conn.execute(
            """UPDATE links SET retry_at = now() - interval '1 minute'
               WHERE id IN (SELECT id FROM links WHERE status = 'failed' AND retry_at IS NOT NULL
                            ORDER BY id LIMIT 100)"""
        )
        await conn.execute(
            """UPDATE links SET retry_count = 3
               WHERE id IN (SELECT id FROM links WHERE status = 'failed' AND retry_at > now()
                            ORDER BY id LIMIT 100)"""
        )
        # a pending request with a queued link (-> running), a running one all done (-> completed)
        rows = await conn.fetch(
            """INSERT INTO requests (id, service_type, name, status, type_request, priority,
                                     created_at, updated_at)
               VALUES
                   (gen_random_uuid(), 'entity', 'to start', 'pending', 'normal', 0, now(), now()),
                   (gen_random_uuid(), 'entity', 'to close', 'running', 'normal', 0, now(), now())
               RETURNING id, status"""
        )
        await conn.execute(
            """WITH src AS (SELECT id FROM links WHERE status = 'queued' ORDER BY id LIMIT 1)
               UPDATE links SET request_id = $1 FROM src WHERE links.id = src.id""",
            next(r["id"] for r in rows if r["status"] == "pending"),
        )
        await conn.execute(
            """WITH src AS (SELECT id FROM links WHERE status = 'completed' ORDER BY id LIMIT 10)
               UPDATE links SET request_id = $1 FROM src WHERE links.id = src.id""",
            next(r["id"] for r in rows if r["status"] == "running"),
        )
        await conn.execute("VACUUM ANALYZE links")
    finally:
        await conn.close()


async def slots_check(url: str) -> str:
    """Whether every server's active_tasks still equals its in-flight links."""
    conn = await asyncpg.connect(url)
    try:
        wrong = await conn.fetchval(
            """SELECT count(*) FROM servers s LEFT JOIN (
                   SELECT server_id, count(*) AS n FROM links
                   WHERE status IN ('queued', 'running', 'connecting') GROUP BY server_id) c
               ON c.server_id = s.id WHERE s.active_tasks <> coalesce(c.n, 0)"""
        )
    finally:
        await conn.close()
    return "active_tasks exact on every server" if wrong == 0 else f"{wrong} servers off"


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
    )
    big_label = f"{args.links // 1000}k" if args.links < 1_000_000 else f"{args.links / 1e6:g}M"
    small_label = f"{args.small_links // 1000}k"
    try:
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
        print(f"{big_label}: {counts_big}\n{small_label}: {counts_small}")

        print("\n## Idle tick: no free slot, pending links waiting, nothing stale or due")
        idle_full = await measure_idle({small_label: small, big_label: big}, args.idle_ticks)
        print(idle_table(idle_full, small_label, big_label))
        idle_plans = {
            label: await capture_plans(url, steps.tick)
            for label, url in ((small_label, small), (big_label, big))
        }
        print("\nShared buffers (hit + read) of each statement of one idle tick\n")
        print(buffers_table(idle_plans, small_label, big_label))

        print(f"\n## Assign rate: {args.pending} pending, {args.slots} free slots a round")
        seconds, placed = await assign_rounds(big, args.rounds, args.slots)
        ref = common.median(
            [n / s for n, s in zip(placed["reference"], seconds["reference"], strict=True)]
        )
        rate = {
            m: common.median([n / s for n, s in zip(placed[m], seconds[m], strict=True)])
            for m in seconds
        }

        print(f"\n## Seed API client: {args.http_links} links a round over HTTP")
        http = await measure_http(big, args.http_rounds, args.http_links, args.port)
        http_rate = {k: common.median(v) for k, v in http.items()}

        rows = [
            [
                m,
                f"{common.median(placed[m]):.0f}",
                ms(common.median(seconds[m])),
                f"{rate[m]:,.0f}",
                f"{rate[m] / ref:.2f}",
            ]
            for m in seconds
        ]
        rows += [
            [f"seed API client, {k}", str(args.http_links), "", f"{v:,.0f}", f"{v / ref:.3f}"]
            for k, v in http_rate.items()
            if k != "GET /healthz"
        ]
        print(f"\n## Assign rate at {big_label} links, medians of {args.rounds} rounds\n")
        print(
            common.table(["method", "links a round", "ms a round", "links/s", "÷ reference"], rows)
        )
        print(
            f"\ntick ÷ reference = {rate['tick'] / ref:.2f} (target ≥ 0.5); "
            f"assign_pending ÷ reference = {rate['assign_pending'] / ref:.2f}; "
            f"tick ÷ seed client = {rate['tick'] / http_rate['1 in flight']:.1f}x one at a time, "
            f"{rate['tick'] / http_rate['8 in flight']:.1f}x 8 in flight (target ≥ 20x)\n"
            f"(GET /healthz one at a time meanwhile: {http_rate['GET /healthz']:,.0f} requests/s)"
        )

        print("\n## Plans at", big_label)
        await make_work(big)
        holder: dict[str, Any] = {}

        async def working(ctx: Context) -> None:
            holder["report"] = await steps.tick(ctx)

        work_plans = await capture_plans(big, working)
        print_plans("idle tick", idle_plans[big_label])
        print(f"\nworking tick: {holder['report']}; {await slots_check(big)}")
        print_plans("working tick", work_plans)

        print("\n## Idle tick: free slots, no pending link")
        for url in (small, big):
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
        idle_empty = await measure_idle({small_label: small, big_label: big}, args.idle_ticks)
        print(idle_table(idle_empty, small_label, big_label))

        full = [common.median(idle_full[x]["tick"]) for x in (big_label, small_label)]
        empty = [common.median(idle_empty[x]["tick"]) for x in (big_label, small_label)]
        summary = {
            "tick_vs_reference": rate["tick"] / ref,
            "tick_vs_seed_client": rate["tick"] / http_rate["1 in flight"],
            "tick_vs_seed_client_8": rate["tick"] / http_rate["8 in flight"],
            "idle_1m_vs_10k": full[0] / full[1],
            "idle_1m_vs_10k_nothing_pending": empty[0] / empty[1],
        }
        print("\n## Summary")
        for line, _ in verdicts(summary):
            print(line)
        return summary
    finally:
        if not args.keep:
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
