"""The data of the dispatcher benchmark (bench/dispatch.py): scratch databases of realistic
links, the rounds' set-up and undo, and the dispatcher's context on them."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import common

from assign.app import build_context
from assign.db.migrate import upgrade
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


REQUEST_COLUMNS = ("id", "service_type", "name", "status", "type_request", "priority",
                   "started_at", "completed_at", "created_at", "updated_at")  # fmt: skip
SERVER_COLUMNS = ("id", "name", "service", "status", "max_threads", "priority", "service_types",
                  "api_key_hash", "created_at", "updated_at")  # fmt: skip


async def add_requests(
    conn: asyncpg.Connection, base: datetime, open_ids: list[uuid.UUID], closed_ids: list[uuid.UUID]
) -> None:
    """The open (running) requests and the closed (completed) ones of the history."""
    kinds = common.SERVICE_TYPES
    records = [
        (rid, kinds[i % len(kinds)], f"campaign {i}", status, "normal", (i * 7) % 6,
         base - timedelta(days=31), None if status == "running" else base, base, base)
        for status, ids in (("running", open_ids), ("completed", closed_ids))
        for i, rid in enumerate(ids)
    ]  # fmt: skip
    await conn.copy_records_to_table("requests", records=records, columns=REQUEST_COLUMNS)


async def add_servers(conn: asyncpg.Connection, base: datetime) -> list[uuid.UUID]:
    """N_SERVERS online tool servers without slots (filled later); their ids."""
    server_ids = [uuid.uuid4() for _ in range(N_SERVERS)]
    records = [
        (sid, f"tool-{i:03d}", "tool", "online", 0, i % 4, "[]", uuid.uuid4().hex * 2, base, base)
        for i, sid in enumerate(server_ids)
    ]
    await conn.copy_records_to_table("servers", records=records, columns=SERVER_COLUMNS)
    return server_ids


async def generate_links(conn: asyncpg.Connection, *args: Any) -> None:
    """GENERATE with ``args``, the secondary indexes of links rebuilt afterwards with their exact
    definitions, foreign-key triggers skipped (the rows refer to real parents)."""
    indexes = await common.secondary_indexes(conn, "links")
    for name, _ in indexes:
        await conn.execute(f"DROP INDEX {name}")
    await conn.execute("SET session_replication_role = replica")
    await conn.execute("SET maintenance_work_mem = '256MB'")
    await conn.execute(GENERATE, *args)
    await conn.execute("RESET session_replication_role")
    for _, definition in indexes:
        await conn.execute(definition)


async def load(url: str, n_links: int, n_pending: int) -> dict[str, int]:
    """Servers, requests and ``n_links`` links; the servers left full. Counts by status."""
    live = sum(n for _, n in LIVE)
    w = min(n_links, live + n_pending + max(n_pending // 4, 1000))
    history = n_links - w
    base = datetime.now(UTC) - timedelta(minutes=10)
    conn = await asyncpg.connect(url)
    try:
        open_ids = [uuid.uuid4() for _ in range(OPEN_REQUESTS)]
        closed_ids = [uuid.uuid4() for _ in range(max(1, math.ceil(history / HISTORY_PER_REQUEST)))]
        await add_requests(conn, base, open_ids, closed_ids)
        server_ids = await add_servers(conn, base)
        bounds, total = [], 0
        for _, n in (*LIVE, ("pending", n_pending)):
            total += n
            bounds.append(total)
        await generate_links(
            conn, n_links, w, _coprime(w), open_ids, closed_ids, base, bounds, server_ids
        )
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
