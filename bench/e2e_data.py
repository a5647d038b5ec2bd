"""The data of ``bench/e2e.py``: a run's measurements, the tool servers and requests written
straight into PostgreSQL or SQLite, and the checks of the links once a run is over."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from assign.security import keys


@dataclass
class Run:
    name: str
    links: int
    #: which round of ``--rounds`` it ran in (every run's ratios are to the same round's)
    round: int = 1
    seconds: float = float("nan")
    requests: int = 0
    api_cpu: float = float("nan")
    db_cpu: float = float("nan")
    #: CPU of this process (the load generator) during the run
    bench_cpu: float = float("nan")
    #: PostgreSQL backends that served Assign during the run
    backends: int = 0
    claims: list[float] = field(default_factory=list)
    results: list[float] = field(default_factory=list)
    first_claim: list[float] = field(default_factory=list)
    rss_mb: float = float("nan")
    checks: str = ""

    @property
    def rate(self) -> float:
        return self.links / self.seconds


@dataclass
class Fleet:
    request_id: uuid.UUID
    worker_key: str
    server_keys: list[str]
    #: one request a "bulk create -> first claim" probe (a request that finished takes no links)
    probe_ids: list[uuid.UUID] = field(default_factory=lambda: [uuid.uuid4() for _ in range(7)])


def _fleet_rows(n_servers: int, slots: int) -> tuple[list[tuple[Any, ...]], Fleet]:
    now = datetime.now(UTC)
    request_id = uuid.uuid4()
    worker_key = "wk_" + uuid.uuid4().hex
    server_keys = ["tk_" + uuid.uuid4().hex for _ in range(n_servers)]
    rows = [(uuid.uuid4(), "assign-1", "assign", "online", 10, keys.hash_key(worker_key), now)]
    rows += [
        (uuid.uuid4(), f"tool-{i}", "tool", "online", slots, keys.hash_key(k), now)
        for i, k in enumerate(server_keys)
    ]
    return rows, Fleet(request_id, worker_key, server_keys)


def _requests(fleet: Fleet) -> list[tuple[uuid.UUID, str]]:
    return [(fleet.request_id, "running")] + [(p, "pending") for p in fleet.probe_ids]


async def seed_postgres(url: str, n_servers: int, slots: int) -> Fleet:
    rows, fleet = _fleet_rows(n_servers, slots)
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        for sid, name, service, status, threads, key_hash, _ in rows:
            await conn.execute(
                "INSERT INTO servers (id, name, service, status, max_threads, service_types, "
                "api_key_hash, active_tasks, active_threads, priority, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, '[]', $6, 0, 0, 0, $7, $7)",
                sid, name, service, status, threads, key_hash, now,
            )  # fmt: skip
        for request_id, status in _requests(fleet):
            await conn.execute(
                "INSERT INTO requests (id, service_type, name, status, type_request, priority, "
                "created_links, created_at, updated_at) VALUES ($1, 'entity', 'bench', $2, "
                "'normal', 0, 0, $3, $3)",
                request_id, status, now,
            )  # fmt: skip
    finally:
        await conn.close()
    return fleet


def seed_sqlite(path: str, n_servers: int, slots: int) -> Fleet:
    rows, fleet = _fleet_rows(n_servers, slots)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    db = sqlite3.connect(path)
    with db:
        for sid, name, service, status, threads, key_hash, _ in rows:
            db.execute(
                "INSERT INTO servers (id, name, service, status, max_threads, service_types, "
                "api_key_hash, active_tasks, active_threads, priority, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, '[]', ?, 0, 0, 0, ?, ?)",
                (sid.hex, name, service, status, threads, key_hash, now, now),
            )
        for request_id, status in _requests(fleet):
            db.execute(
                "INSERT INTO requests (id, service_type, name, status, type_request, priority, "
                "created_links, created_at, updated_at) VALUES (?, 'entity', 'bench', ?, "
                "'normal', 0, 0, ?, ?)",
                (request_id.hex, status, now, now),
            )
    db.close()
    return fleet


async def check_postgres(url: str, fleet: Fleet, total: int) -> str:
    conn = await asyncpg.connect(url)
    try:
        return _verdict(
            await conn.fetchval("SELECT count(*) FROM links WHERE status = 'completed'"),
            await conn.fetchval("SELECT count(*) FROM links"),
            await conn.fetchval("SELECT coalesce(sum(active_tasks), 0) FROM servers"),
            await conn.fetchval("SELECT sum(created_links) FROM requests"),
            total,
        )
    finally:
        await conn.close()


def check_sqlite(path: str, fleet: Fleet, total: int) -> str:
    db = sqlite3.connect(path)
    try:
        one = lambda q, *a: db.execute(q, a).fetchone()[0]  # noqa: E731
        return _verdict(
            one("SELECT count(*) FROM links WHERE status = 'completed'"),
            one("SELECT count(*) FROM links"),
            one("SELECT coalesce(sum(active_tasks), 0) FROM servers"),
            one("SELECT sum(created_links) FROM requests"),
            total,
        )
    finally:
        db.close()


def _verdict(completed: int, links: int, active: int, created: int, total: int) -> str:
    ok = completed == links == total and active == 0 and created == total
    return (
        "ok" if ok else "FAILED"
    ) + f" ({completed}/{links} completed, active_tasks {active}, created_links {created})"
