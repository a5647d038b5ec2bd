"""End to end: no-op links through their whole life, Assign against its peers and raw SQL.

    PYTHONPATH=src python bench/e2e.py --links 20000          # the full table (several minutes)
    PYTHONPATH=src python bench/e2e.py --links 3000 --only assign-pg-worker,raw-pg-batched

Every run: ``--servers`` simulated tool servers with ``--slots`` slots each take ``--links``
pre-created no-op links (claim, report at once), timed from the first claim to the last
completion. Assign runs as real processes (``assign serve``; or two API processes plus
``assign dispatch``), with the load generator in this process, through HTTP one result call
per link (the seed API's way, with waiting claims) or through ``assign.worker`` (batches).
After each Assign run the invariants are checked: all completed, none claimed twice,
``active_tasks`` 0, ``created_links`` exact. Then, with every server's claim waiting, a few
small bulk creates measure the time to the first claim that gets one of their links.
procrastinate (``pip install .[bench]``) and raw SQL on the same database give the context.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from assign.security import keys
from assign.worker import Result, Worker

TOOL = "/api/v1/tool"
WORKER = "/api/v1/worker"


@dataclass
class Run:
    name: str
    links: int
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


# --- processes -------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat", "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _peak_rss_mb(pids: list[int]) -> float:
    peak = 0.0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
    return peak


class Service:
    """The Assign processes of one configuration."""

    def __init__(
        self, url: str, port: int, *, api_processes: int = 1, separate_dispatcher: bool = False
    ) -> None:
        self.url, self.port = url, port
        self.base = f"http://127.0.0.1:{port}"
        self.api_processes = api_processes
        self.separate = separate_dispatcher
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = tempfile.NamedTemporaryFile(prefix="assign-e2e-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> Service:
        env = {
            **common.assign_env(self.url),
            "ASSIGN_LOG_LEVEL": "WARNING",
            "ASSIGN_DISPATCH_INTERVAL": "1",
        }
        serve = [sys.executable, "-m", "assign", "serve", "--port", str(self.port)]
        if self.api_processes > 1:
            serve += ["--workers", str(self.api_processes)]
        if self.separate:
            serve.append("--no-dispatcher")
        self.procs.append(
            subprocess.Popen(serve, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        )
        if self.separate:
            dispatch = [sys.executable, "-m", "assign", "dispatch"]
            self.procs.append(
                subprocess.Popen(dispatch, env=env, stdout=self.log, stderr=subprocess.STDOUT)
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    time.sleep(0.5 * self.api_processes)
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"assign serve did not answer; see {self.log.name}")

    def pids(self) -> list[int]:
        return [p for proc in self.procs for p in _descendants(proc.pid)]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


class BackendCpu:
    """CPU time of the PostgreSQL backends serving Assign (``application_name`` assign...),
    sampled while a run lasts: the API's pool opens connections as the load grows (and closes
    its overflow ones), so the backends alive at the start are not those at the end. A backend
    first seen during the run counts from zero; one that ends counts up to its last sample."""

    def __init__(self, conn: asyncpg.Connection, every: float = 0.05) -> None:
        self.conn, self.every = conn, every
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.running = False
        self.task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'assign%'"
        )
        for (pid,) in rows:
            cpu = common.cpu_seconds([pid])
            self.first.setdefault(pid, 0.0 if self.running else cpu)
            if cpu or pid not in self.last:  # 0: it ended between the query and the read
                self.last[pid] = cpu

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._sample()

    async def start(self) -> None:
        await self._sample()
        self.running = True
        self.task = asyncio.create_task(self._poll())

    async def stop(self) -> float:
        """Seconds of CPU the backends used since :meth:`start`."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self._sample()
        return sum(self.last[p] - self.first[p] for p in self.last)

    @property
    def backends(self) -> int:
        return len(self.last)


# --- data ------------------------------------------------------------------------------------


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


async def bulk_create(
    http: httpx.AsyncClient, base: str, fleet: Fleet, n: int, request_id: uuid.UUID | None = None
) -> None:
    for start in range(0, n, 5000):
        items = [
            {
                "request_id": str(request_id or fleet.request_id),
                "service_type": "entity",
                "site_name": f"s{i % 50}",
            }
            for i in range(start, min(n, start + 5000))
        ]
        response = await http.post(
            f"{base}{WORKER}/links/bulk",
            json={"links": items},
            headers={"X-API-Key": fleet.worker_key},
        )
        response.raise_for_status()


# --- the load: simulated tool servers --------------------------------------------------------


class Http1:
    """A cheap HTTP/1.1 client for the load: requests encoded by hand, sent over keep-alive
    connections (at most ``size``, each carrying one request at a time), answers read by their
    ``content-length``. httpx spends about 2 ms of CPU a request here, as much as the API
    itself, and the load generator shares the machine's cores with what it measures."""

    def __init__(self, base: str, key: str, size: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.head = b"\r\nhost: %s\r\nx-api-key: %s\r\ncontent-type: application/json\r\n" % (
            base.removeprefix("http://").encode(),
            key.encode(),
        )
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)
        self.open: set[asyncio.StreamWriter] = set()

    async def call(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one request."""
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.open.add(writer)
            try:
                writer.write(
                    b"%s %s HTTP/1.1%scontent-length: %d\r\n\r\n%s"
                    % (method, path, self.head, len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                at = head.lower().find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError("an answer without content-length")
                length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
                content = await reader.readexactly(length)
            except BaseException:
                self.open.discard(writer)
                writer.close()
                raise
            self.idle.append((reader, writer))
            return status, content

    def close(self) -> None:
        for writer in self.open:
            writer.close()
        self.open.clear()
        self.idle.clear()


class Load:
    """Tool servers that report at once: through HTTP one call per result, or assign.worker."""

    def __init__(self, base: str, fleet: Fleet, slots: int, run: Run) -> None:
        self.base, self.fleet, self.slots, self.run = base, fleet, slots, run
        self.claimed: dict[str, int] = {}
        self.completed = 0
        self.first_claim_at: float | None = None
        self.got_links = asyncio.Event()
        self.done = asyncio.Event()
        self.target = run.links

    def _got(self, links: list[Any]) -> None:
        if links and self.first_claim_at is None:
            self.first_claim_at = time.perf_counter()
        if links:
            self.got_links.set()
        for link in links:
            self.claimed[link["id"]] = self.claimed.get(link["id"], 0) + 1

    def _finished(self, n: int) -> None:
        self.completed += n
        if self.completed >= self.target:
            self.done.set()

    async def per_link(self, key: str, stop: asyncio.Event) -> None:
        http = Http1(self.base, key, self.slots + 2)
        free = asyncio.Semaphore(self.slots)
        pending: set[asyncio.Task[None]] = set()
        done = b'{"status":"completed"}'

        async def report(link_id: str) -> None:
            try:
                for _ in range(20):
                    started = time.perf_counter()
                    status, _ = await http.call(
                        b"PUT", f"{TOOL}/links/{link_id}/result".encode(), done
                    )
                    self.run.requests += 1
                    self.run.results.append(time.perf_counter() - started)
                    if status == 200:
                        self._finished(1)
                        return
                    await asyncio.sleep(0.1)
            finally:
                free.release()

        try:
            while not stop.is_set():
                await free.acquire()
                n = 1
                while n < self.slots and free._value > 0:
                    await free.acquire()
                    n += 1
                started = time.perf_counter()
                body = b'{"limit":%d,"wait_seconds":10}' % n
                claim = asyncio.ensure_future(
                    http.call(b"POST", f"{TOOL}/links/claim".encode(), body)
                )
                await asyncio.wait(
                    [claim, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED
                )
                if not claim.done():
                    claim.cancel()  # its connection is closed: the service sees the client leave
                    return
                status, content = claim.result()
                self.run.requests += 1
                self.run.claims.append(time.perf_counter() - started)
                links = orjson.loads(content)["data"] if status == 200 else []
                self._got(links)
                for _ in range(n - len(links)):
                    free.release()
                for link in links:
                    task = asyncio.create_task(report(link["id"]))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        finally:
            http.close()

    async def with_worker(self, key: str, stop: asyncio.Event) -> None:
        load = self

        class Counting(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                started = time.perf_counter()
                response = await super().handle_async_request(request)
                await response.aread()
                load.run.requests += 1
                elapsed = time.perf_counter() - started
                if request.url.path.endswith("/claim"):
                    load.run.claims.append(elapsed)
                    if response.status_code == 200:
                        load._got(orjson.loads(response.content)["data"])
                elif request.url.path.endswith("/results"):
                    load.run.results.append(elapsed)
                    if response.status_code == 200:
                        load._finished(orjson.loads(response.content)["updated"])
                return response

        async def noop(link: Any) -> Result:
            return Result()

        worker = Worker(self.base, key, noop, transport=Counting(), wait_seconds=10, batch_size=500)
        await worker.run(stop)


async def drive(
    run: Run,
    base: str,
    fleet: Fleet,
    slots: int,
    mode: str,
    pids: Callable[[], list[int]],
    db: BackendCpu | None,
) -> Load:
    load = Load(base, fleet, slots, run)
    stop = asyncio.Event()
    runner = load.per_link if mode == "http" else load.with_worker
    tasks = [asyncio.create_task(runner(key, stop)) for key in fleet.server_keys]
    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.sleep(1.0)  # every server waiting in its claim
        await bulk_create(http, base, fleet, run.links)
        cpu0, own0 = common.cpu_seconds(pids()), time.process_time()
        if db is not None:
            await db.start()
        await load.done.wait()
        assert load.first_claim_at is not None
        run.seconds = time.perf_counter() - load.first_claim_at
        run.api_cpu = common.cpu_seconds(pids()) - cpu0
        run.bench_cpu = time.process_time() - own0
        if db is not None:
            run.db_cpu = await db.stop()
            run.backends = db.backends
        await asyncio.sleep(0.5)
        # bulk create -> first claim, while every claim waits
        for probe in fleet.probe_ids:
            load.got_links.clear()
            load.target = load.completed + 5
            load.done.clear()
            started = time.perf_counter()
            await bulk_create(http, base, fleet, 5, probe)
            # the bulk create does not answer the new ids: the next claim with links counts
            await load.got_links.wait()
            run.first_claim.append(time.perf_counter() - started)
            await load.done.wait()
        run.rss_mb = _peak_rss_mb(pids())
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    run.checks = _duplicates(load)
    return load


def _duplicates(load: Load) -> str:
    twice = sum(1 for n in load.claimed.values() if n > 1)
    return "none claimed twice" if not twice else f"{twice} CLAIMED TWICE"


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


# --- Assign runs -----------------------------------------------------------------------------


async def assign_run(
    name: str, engine: str, mode: str, args: argparse.Namespace, *, two: bool = False
) -> Run:
    run = Run(name, args.links)
    probes = 7 * 5
    port = args.port
    if engine == "pg":
        db_name = f"assign_bench_e2e_{os.getpid()}"
        async with common.scratch_database(db_name) as url:
            fleet = await seed_postgres(url, args.servers, args.slots)
            service = Service(
                url, port, api_processes=2 if two else 1, separate_dispatcher=two
            ).start()
            admin = await asyncpg.connect(url)
            try:
                await drive(
                    run,
                    service.base,
                    fleet,
                    args.slots,
                    mode,
                    service.pids,
                    BackendCpu(admin),
                )
            finally:
                await admin.close()
                service.stop()
            run.checks = (await check_postgres(url, fleet, args.links + probes)) + "; " + run.checks
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/assign.db"
            url = f"sqlite+aiosqlite:///{path}"
            common.cli("migrate", url=url)
            fleet = seed_sqlite(path, args.servers, args.slots)
            service = Service(url, port).start()
            try:
                await drive(run, service.base, fleet, args.slots, mode, service.pids, None)
            finally:
                service.stop()
            run.checks = check_sqlite(path, fleet, args.links + probes) + "; " + run.checks
    return run


# --- raw SQL ceilings ------------------------------------------------------------------------

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


# --- procrastinate ---------------------------------------------------------------------------


async def procrastinate_run(name: str, concurrency: int, args: argparse.Namespace) -> Run:
    import procrastinate

    run = Run(name, args.links)
    async with common.scratch_database(f"assign_bench_pq_{os.getpid()}") as url:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        @app.task(name="noop")
        async def noop() -> None:
            return None

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            for start in range(0, args.links, 5000):
                await noop.batch_defer_async(*({} for _ in range(min(5000, args.links - start))))
            started = time.perf_counter()
            await app.run_worker_async(
                concurrency=concurrency,
                wait=False,
                install_signal_handlers=False,
                delete_jobs="never",
            )
            run.seconds = time.perf_counter() - started
    return run


# --- output ----------------------------------------------------------------------------------


def _ms(values: list[float], p: float) -> str:
    return f"{common.percentile(values, p) * 1000:.0f}" if values else "-"


def report(runs: list[Run]) -> str:
    by_name = {r.name: r for r in runs}

    def ratio(run: Run, other: str) -> str:
        ref = by_name.get(other)
        return f"{run.rate / ref.rate:.2f}" if ref else "-"

    rows = []
    for r in runs:
        ceiling = "raw-sqlite-batched" if "sqlite" in r.name else "raw-pg-batched"
        per_link = "raw-sqlite-per-link" if "sqlite" in r.name else "raw-pg-per-link"
        rows.append([
            r.name, f"{r.rate:,.0f}", ratio(r, ceiling), ratio(r, per_link), ratio(r, "procrastinate-c4"),
            f"{r.requests / r.links:.2f}" if r.requests else "-",
            f"{r.api_cpu / r.links * 1000:.2f}" if r.api_cpu == r.api_cpu else "-",
            f"{r.db_cpu / r.links * 1000:.2f}" if r.db_cpu == r.db_cpu else "-",
            f"{r.bench_cpu / r.links * 1000:.2f}" if r.bench_cpu == r.bench_cpu else "-",
            str(r.backends or "-"),
            f"{_ms(r.claims, 50)}/{_ms(r.claims, 99)}", f"{_ms(r.results, 50)}/{_ms(r.results, 99)}",
            _ms(r.first_claim, 50), f"{r.rss_mb:.0f}" if r.rss_mb == r.rss_mb else "-", r.checks or "-",
        ])  # fmt: skip
    headers = ["run", "links/s", "÷ raw batched", "÷ raw per link", "÷ procrastinate c4",
               "requests/link", "API CPU ms/link", "DB CPU ms/link", "load CPU ms/link",
               "DB backends", "claim p50/p99 ms",
               "result p50/p99 ms", "create→claim p50 ms", "API RSS MB", "invariants"]  # fmt: skip
    return common.table(headers, rows)


RUNS: dict[str, Callable[[argparse.Namespace], Awaitable[Run]]] = {
    "procrastinate-c1": lambda a: procrastinate_run("procrastinate-c1", 1, a),
    "procrastinate-c4": lambda a: procrastinate_run("procrastinate-c4", 4, a),
    "raw-pg-per-link": lambda a: raw_pg("raw-pg-per-link", False, a),
    "raw-pg-batched": lambda a: raw_pg("raw-pg-batched", True, a),
    "raw-sqlite-per-link": lambda a: asyncio.to_thread(raw_sqlite, "raw-sqlite-per-link", False, a),
    "raw-sqlite-batched": lambda a: asyncio.to_thread(raw_sqlite, "raw-sqlite-batched", True, a),
    "assign-pg-http": lambda a: assign_run("assign-pg-http", "pg", "http", a),
    "assign-pg-worker": lambda a: assign_run("assign-pg-worker", "pg", "worker", a),
    "assign-pg-2api-http": lambda a: assign_run("assign-pg-2api-http", "pg", "http", a, two=True),
    "assign-pg-2api-worker": lambda a: assign_run(
        "assign-pg-2api-worker", "pg", "worker", a, two=True
    ),
    "assign-sqlite-http": lambda a: assign_run("assign-sqlite-http", "sqlite", "http", a),
    "assign-sqlite-worker": lambda a: assign_run("assign-sqlite-worker", "sqlite", "worker", a),
}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=20_000)
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("--slots", type=int, default=50)
    parser.add_argument("--port", type=int, default=18_731)
    parser.add_argument("--only", default="", help="comma-separated run names: " + ", ".join(RUNS))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    conn = await asyncpg.connect(common.ADMIN_URL)
    print(await common.machine_line(conn))
    await conn.close()
    print(f"{args.links:,} no-op links, {args.servers} tool servers x {args.slots} slots\n")
    runs = []
    for name in names:
        run = await RUNS[name](args)
        print(f"{name}: {run.rate:,.0f} links/s ({run.seconds:.1f} s) {run.checks}", flush=True)
        runs.append(run)
    print()
    print(report(runs))


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main())
