"""Helpers shared by the benchmarks: scratch databases, a real ``assign serve``, data, statistics.

Each benchmark makes its own PostgreSQL database (``assign_bench_*``), migrates it with
``assign migrate``, runs the API as a subprocess on 127.0.0.1 and drops the database at the end.
``ASSIGN_BENCH_POSTGRES_URL`` names the maintenance database to create them from
(default ``postgresql://root@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from assign.testing import databases, procs

ADMIN_URL = os.environ.get("ASSIGN_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")
SECRET = "assign-bench-secret-" + "s" * 32
SERVICE_TYPES = ("entity", "social", "blog20", "stacking", "podcast", "indexing")


# --- databases -------------------------------------------------------------------------------


def db_url(name: str) -> str:
    return databases.with_database(ADMIN_URL, name)


async def create_database(name: str) -> str:
    """A fresh empty database ``name`` (dropped first if left over); its URL."""
    return await databases.create_database(ADMIN_URL, name)


async def drop_database(name: str) -> None:
    await databases.drop_database(ADMIN_URL, name)


@contextlib.asynccontextmanager
async def scratch_database(name: str, *, keep: bool = False) -> AsyncIterator[str]:
    """A migrated scratch database for the duration of the block."""
    url = await create_database(name)
    try:
        cli("migrate", url=url)
        yield url
    finally:
        if not keep:
            await drop_database(name)


def assign_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ASSIGN_DATABASE_URL=url, ASSIGN_SECRET_KEY=SECRET)
    env.pop("ASSIGN_ADMIN_KEY", None)
    env.pop("ASSIGN_RATE_LIMIT_PER_MINUTE", None)
    return env


def cli(*args: str, url: str, timeout: float = 600.0) -> str:
    """Run ``assign ARGS`` against ``url``; its stdout."""
    return procs.run_cli(assign_env(url), *args, timeout=timeout)


def worker_key(url: str, name: str = "bench-assign") -> str:
    """The API key of a new assign server (``assign server add``), for the worker API."""
    return cli("server", "add", name, "--service", "assign", url=url).strip().splitlines()[-1]


# --- the API under test ----------------------------------------------------------------------


class ApiServer:
    """``assign serve --no-dispatcher`` as a subprocess on 127.0.0.1:port (one worker process)."""

    def __init__(self, url: str, port: int) -> None:
        self.url = url
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: procs.Proc | None = None
        self.log = Path(tempfile.gettempdir()) / f"assign-bench-{port}-{uuid.uuid4().hex[:8]}.log"

    def start(self) -> ApiServer:
        args = ["serve", "--no-dispatcher", "--port", str(self.port)]
        self.proc = procs.Proc("serve", args, assign_env(self.url), self.log)
        if procs.wait_ready(self.proc, self.base, 30, path="/healthz"):
            return self
        exited = not self.proc.alive()
        self.stop(keep_log=True)
        if exited:
            raise RuntimeError(f"assign serve exited; see {self.log}")
        raise RuntimeError(f"assign serve did not answer in 30 s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, *, keep_log: bool = False) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=15)
        self.proc = None
        if not keep_log:
            with contextlib.suppress(OSError):
                self.log.unlink()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- data ------------------------------------------------------------------------------------


REQUEST_COLUMNS = ("id", "service_type", "name", "website", "status", "type_request", "priority",
                   "created_at", "updated_at")  # fmt: skip


async def add_fleet(
    conn: asyncpg.Connection, *, n_requests: int, n_servers: int
) -> tuple[list[tuple[uuid.UUID, str, int]], list[uuid.UUID]]:
    """``n_requests`` requests (varied priority and type) and ``n_servers`` online tool servers.

    Returns ([(request id, service type, priority)], [server id]).
    """
    now = datetime.now(UTC)
    reqs = [
        (uuid.uuid4(), SERVICE_TYPES[i % len(SERVICE_TYPES)], (i * 7) % 6)
        for i in range(n_requests)
    ]
    await conn.copy_records_to_table(
        "requests",
        records=[
            (rid, kind, f"campaign {i}", "https://example.com", "running", "normal", prio, now, now)
            for i, (rid, kind, prio) in enumerate(reqs)
        ],
        columns=REQUEST_COLUMNS,
    )
    servers = [uuid.uuid4() for _ in range(n_servers)]
    await conn.copy_records_to_table(
        "servers",
        records=[
            (
                sid,
                f"tool-{i:03d}",
                "tool",
                "online",
                100,
                i % 4,
                "[]",
                uuid.uuid4().hex * 2,
                now,
                now,
            )
            for i, sid in enumerate(servers)
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
    return reqs, servers


#: 1,000,000 rows of links in ~72% completed, 20% pending, 2% each queued/running/failed,
#: 1% canceled/connect; 80% with one of 5,000 posting-account emails; spread over 30 days.
GENERATE_LINKS = """
WITH req AS (
    SELECT id, service_type, priority, (row_number() OVER (ORDER BY id)) - 1 AS i FROM requests
), g AS (
    SELECT n, random() AS r, random() AS r2 FROM generate_series(1, $1::int) AS n
), s AS (
    SELECT n, r2, (n::bigint * 7919) % (SELECT count(*) FROM req) AS ri,
           $2::uuid[] AS servers,
           CASE WHEN r < 0.20 THEN 'pending' WHEN r < 0.22 THEN 'queued'
                WHEN r < 0.24 THEN 'running' WHEN r < 0.26 THEN 'failed'
                WHEN r < 0.27 THEN 'canceled' WHEN r < 0.275 THEN 'connect'
                ELSE 'completed' END AS status,
           now() - make_interval(secs => ($1::int - n) * 2.5) AS created
    FROM g
)
INSERT INTO {table} (
    id, request_id, service_type, server_id, site_id, site_name, email, username, password_enc,
    about, status, phase, priority, retry_count, max_retries, error, profile_url, post_url,
    details, assigned_at, started_at, completed_at, created_at, updated_at
)
SELECT gen_random_uuid(), req.id, req.service_type,
       CASE WHEN s.status = 'pending' THEN NULL
            ELSE s.servers[1 + s.n % cardinality(s.servers)] END,
       md5('site' || s.n % 200)::uuid, 'site-' || s.n % 200,
       CASE WHEN s.n % 5 = 0 THEN NULL ELSE 'account' || s.n % 5000 || '@example.com' END,
       'user' || s.n % 5000,
       decode(md5(s.n::text) || md5(s.n::text || 'x') || '0102030405060708', 'hex'),
       'About this profile: ' || repeat('link building ', 10),
       s.status,
       CASE WHEN s.status = 'connect' THEN 'connect' ELSE 'create' END,
       req.priority,
       CASE WHEN s.status = 'failed' THEN (s.n % 4) ELSE 0 END, 3,
       CASE WHEN s.status = 'failed' THEN 'captcha not solved' END,
       CASE WHEN s.status IN ('completed', 'connect')
            THEN 'https://site-' || s.n % 200 || '.example/u/' || s.n END,
       CASE WHEN s.status = 'completed' AND s.n % 2 = 0
            THEN 'https://site-' || s.n % 200 || '.example/p/' || s.n END,
       jsonb_build_object('keyword', 'keyword ' || s.n % 1000, 'anchor', 'anchor ' || s.n % 97),
       CASE WHEN s.status <> 'pending' THEN s.created + interval '1 minute' END,
       CASE WHEN s.status IN ('running', 'completed', 'failed')
            THEN CASE WHEN s.status = 'running' THEN now() - make_interval(secs => s.r2 * 3600)
                      ELSE s.created + interval '2 minutes' END END,
       CASE WHEN s.status IN ('completed', 'failed') THEN s.created + interval '5 minutes' END,
       s.created, s.created
FROM s JOIN req ON req.i = s.ri
"""


async def secondary_indexes(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the indexes of ``table`` other than its primary key."""
    rows = await conn.fetch(
        """
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i WHERE i.indrelid = $1::regclass AND NOT i.indisprimary
        """,
        table,
    )
    return [(r["name"], r["def"]) for r in rows]


async def generate_links(
    conn: asyncpg.Connection, table: str, n: int, servers: Sequence[uuid.UUID]
) -> None:
    """Load ``n`` realistic links into ``table`` fast: one INSERT ... SELECT generate_series,
    secondary indexes rebuilt afterwards with their exact definitions, FK triggers skipped
    (the rows refer only to existing requests and servers), then VACUUM ANALYZE."""
    indexes = await secondary_indexes(conn, table)
    for name, _ in indexes:
        await conn.execute(f"DROP INDEX {name}")
    await conn.execute("SET session_replication_role = replica")
    await conn.execute("SET maintenance_work_mem = '256MB'")
    try:
        await conn.execute(GENERATE_LINKS.replace("{table}", table), n, list(servers))
    finally:
        await conn.execute("RESET session_replication_role")
    for _, definition in indexes:
        await conn.execute(definition)
    if table == "links":  # the generated rows skipped the triggers that count links
        await conn.execute("DELETE FROM link_counts")
        await conn.execute(
            "INSERT INTO link_counts (request_id, status, n) "
            "SELECT request_id, status, count(*) FROM links GROUP BY request_id, status"
        )
    await conn.execute(f"VACUUM ANALYZE {table}")


async def sync_active_tasks(conn: asyncpg.Connection) -> None:
    """Servers' ``active_tasks`` = their in-flight links, as the service keeps it."""
    await conn.execute(
        """
        UPDATE servers s SET active_tasks = c.n
        FROM (SELECT server_id, count(*) AS n FROM links
              WHERE status IN ('queued', 'running', 'connecting') GROUP BY server_id) c
        WHERE c.server_id = s.id
        """
    )


# --- CPU time (robust when other work shares the cores) --------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time consumed so far by the processes ``pids`` (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


async def backend_pids(conn: asyncpg.Connection, application_name: str = "assign") -> list[int]:
    """PostgreSQL backend processes serving the application's connections in this database."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = $1",
        application_name,
    )
    return [r["pid"] for r in rows]


# --- statistics and output -------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal, pasteable in bench/README.md)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


async def machine_line(conn: asyncpg.Connection) -> str:
    version = await conn.fetchval("SHOW server_version")
    shared = await conn.fetchval("SHOW shared_buffers")
    wal = await conn.fetchval("SHOW max_wal_size")
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {version} "
        f"(shared_buffers {shared}, max_wal_size {wal}); load average now "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
