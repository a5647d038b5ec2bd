"""Load test: two API processes and a dispatcher on PostgreSQL, many concurrent clients, then
the database's invariants.

    python bench/load.py [--clients 200] [--seconds 60] [--tool-servers 20]

Makes a fresh database on PostgreSQL (``ASSIGN_BENCH_POSTGRES_URL``, the maintenance database
to create it from, as for every benchmark; default ``postgresql://root@127.0.0.1:5432/postgres``),
migrates it with
``assign migrate``, and runs two ``assign serve --no-dispatcher`` processes (ports of
8400-8449) and one ``assign dispatch``. Then, for ``--seconds``:

* one client per tool server: heartbeat every few seconds, claim, work a little, report each
  link completed (90 %) or failed (10 %, retried by the dispatcher);
* the other clients, as an assign service would: reads (pending links, requests, available
  servers, link counts), bulk creates of 20 links, and manual assigns of a pending link to an
  available server (a 409 when somebody was first: the only non-2xx answer expected).

Afterwards every process is stopped with SIGTERM (each must exit 0) and the database is
checked: each server's ``active_tasks`` equals its in-flight links, each request's
``created_links`` equals its completed create-phase links, no pending link has a server, no
link is both finished and in flight, and every link a tool server completed is completed once.
Prints requests/s and latency per operation, status codes and PASS/FAIL per check; the exit
status is 1 when anything failed. The database is dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import common
import httpx

from assign.testing import databases, procs

SECRET = "assign-load-test-secret-" + "s" * 32
PORTS = range(8400, 8450)
WORKER = "/api/v1/worker"
TOOL = "/api/v1/tool"
ADMIN = "/api/v1/admin"
#: answers that are part of the protocol: an assign that lost a race (link taken, server full)
EXPECTED = {("assign", 409)}


# --- processes -------------------------------------------------------------------------------


def unavailable(proc: procs.Proc) -> Counter[str]:
    """Causes of a process's 503 answers, from its log ("database unavailable" warnings)."""
    causes: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in proc.log_path.read_text(errors="replace").splitlines():
            if '"database unavailable"' in line:
                with contextlib.suppress(ValueError, AttributeError):
                    causes[json.loads(line).get("error_type", "?")] += 1
    return causes


def errors(proc: procs.Proc) -> list[str]:
    """Error lines of a process's log."""
    try:
        lines = proc.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if '"level":"error"' in line or "Traceback" in line]


class Cluster:
    """The processes under test; every one is stopped (and waited for) on exit."""

    def __init__(self, db_url: str, log_dir: Path, pool_size: int) -> None:
        self.env = procs.child_environment(
            {
                "ASSIGN_DATABASE_URL": db_url,
                "ASSIGN_SECRET_KEY": SECRET,
                "ASSIGN_LOG_LEVEL": "WARNING",
                "ASSIGN_DB_POOL_SIZE": str(pool_size),
                "ASSIGN_DISPATCH_INTERVAL": "0.5",
                "ASSIGN_RETRY_BASE_SECONDS": "2",
                "ASSIGN_RETRY_MAX_SECONDS": "10",
            }
        )
        self.processes = procs.Processes(log_dir)
        #: by process name: the exit status, and the CPU seconds used until it was stopped
        self.exit_codes: dict[str, int] = {}
        self.cpu_at_stop: dict[str, float] = {}

    @property
    def procs(self) -> list[procs.Proc]:
        return self.processes.started

    def cli(self, *args: str) -> str:
        return procs.run_cli(self.env, *args, timeout=120)

    def start(self, name: str, *args: str) -> procs.Proc:
        return self.processes.start(name, self.env, *args)

    def serve(self, name: str) -> str:
        port = procs.free_port(PORTS)
        proc = self.start(name, "serve", "--no-dispatcher", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        if procs.wait_ready(proc, base, 60, poll=0.2):
            return base
        if not proc.alive():
            raise RuntimeError(f"{name} exited: {proc.log_path.read_text()[-2000:]}")
        raise RuntimeError(f"{name} not ready in 60 s")

    def stop_all(self) -> None:
        """SIGTERM to each, the last started first, and wait (SIGKILL after 30 s)."""
        for proc in reversed(self.procs):
            if proc.name not in self.exit_codes:
                if proc.alive():
                    self.cpu_at_stop[proc.name] = proc.cpu_seconds()
                self.exit_codes[proc.name] = proc.stop(timeout=30)


# --- clients ---------------------------------------------------------------------------------


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: Counter[tuple[str, int | str]] = field(default_factory=Counter)
    completed_ids: list[str] = field(default_factory=list)
    samples: list[tuple[str, int | str, str]] = field(default_factory=list)

    def record(self, op: str, status: int | str, seconds: float, body: str = "") -> None:
        self.latency[op].append(seconds)
        self.status[(op, status)] += 1
        unexpected = (op, status) not in EXPECTED and not (isinstance(status, int) and status < 300)
        if unexpected and len(self.samples) < 10:
            self.samples.append((op, status, body[:300]))


class Load:
    def __init__(self, bases: list[str], worker_key: str, requests: list[str], stats: Stats):
        self.bases = bases
        self.worker_key = worker_key
        self.requests = requests
        self.stats = stats
        self.stop = asyncio.Event()
        # idle connections are dropped well before the server's keep-alive timeout (5 s), so a
        # request never goes out on a connection the server is closing at that moment
        limits = httpx.Limits(
            max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=2.0
        )
        self.http = [httpx.AsyncClient(base_url=b, timeout=60, limits=limits) for b in bases]

    async def close(self) -> None:
        for client in self.http:
            await client.aclose()

    async def call(
        self, op: str, client: httpx.AsyncClient, method: str, path: str, key: str, **kw: Any
    ) -> tuple[int | str, Any]:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, headers={"X-API-Key": key}, **kw)
        except httpx.HTTPError as exc:
            self.stats.record(op, type(exc).__name__, time.perf_counter() - started, str(exc))
            return type(exc).__name__, None
        self.stats.record(op, response.status_code, time.perf_counter() - started, response.text)
        body = None
        if response.status_code < 300:
            with contextlib.suppress(ValueError):
                body = response.json()
        return response.status_code, body

    async def tool_client(self, index: int, key: str) -> None:
        client = self.http[index % len(self.http)]
        last_beat = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_beat > 5:
                await self.call("heartbeat", client, "POST", f"{TOOL}/heartbeat", key, json={})
                last_beat = time.monotonic()
            status, body = await self.call(
                "claim", client, "POST", f"{TOOL}/links/claim", key, json={"limit": 10}
            )
            links = body["data"] if status == 200 and body else []
            if not links:
                await asyncio.sleep(0.2)
                continue
            await asyncio.gather(*(self.work(client, key, link) for link in links))

    async def work(self, client: httpx.AsyncClient, key: str, link: dict[str, Any]) -> None:
        await asyncio.sleep(random.uniform(0.01, 0.2))
        if random.random() < 0.9:
            result = {"status": "completed", "profile_url": f"https://site.example/u/{link['id']}"}
        else:
            result = {"status": "failed", "error": "captcha not solved"}
        status, _ = await self.call(
            "result", client, "PUT", f"{TOOL}/links/{link['id']}/result", key, json=result
        )
        if status == 200 and result["status"] == "completed":
            self.stats.completed_ids.append(link["id"])

    async def worker_client(self, index: int) -> None:
        client = self.http[index % len(self.http)]
        key = self.worker_key
        while not self.stop.is_set():
            roll = random.random()
            if roll < 0.15:
                await self.bulk(client)
            elif roll < 0.45:
                await self.assign(client)
            elif roll < 0.65:
                await self.call("list_links", client, "GET", f"{WORKER}/links?limit=50", key)
            elif roll < 0.80:
                await self.call("list_requests", client, "GET", f"{WORKER}/requests", key)
            elif roll < 0.90:
                await self.call("available", client, "GET", f"{WORKER}/servers/available", key)
            else:
                request_id = random.choice(self.requests)
                await self.call(
                    "link_count", client, "GET", f"{WORKER}/requests/{request_id}/links/count", key
                )

    async def bulk(self, client: httpx.AsyncClient) -> None:
        request_id = random.choice(self.requests)
        links = []
        for i in range(20):
            link: dict[str, Any] = {
                "request_id": request_id,
                "service_type": "entity",
                "site_name": f"site-{random.randrange(200)}",
                "username": f"user{random.randrange(10_000)}",
                "password": "secret",
                "details": {"keyword": f"keyword {i}"},
            }
            if random.random() < 0.2:  # paced per posting account by the dispatcher
                link["email"] = f"account{random.randrange(500)}@example.com"
            links.append(link)
        await self.call(
            "bulk", client, "POST", f"{WORKER}/links/bulk", self.worker_key, json={"links": links}
        )

    async def assign(self, client: httpx.AsyncClient) -> None:
        key = self.worker_key
        status, servers = await self.call(
            "available", client, "GET", f"{WORKER}/servers/available", key
        )
        if status != 200 or not servers or not servers["data"]:
            return
        status, pending = await self.call(
            "list_links", client, "GET", f"{WORKER}/links?limit=20", key
        )
        if status != 200 or not pending or not pending["data"]:
            return
        link = random.choice(pending["data"])
        server = random.choice(servers["data"])
        await self.call(
            "assign", client, "PUT", f"{WORKER}/links/{link['id']}/assign", key,
            json={"server_id": server["id"]},
        )  # fmt: skip


# --- checks ----------------------------------------------------------------------------------

INVARIANTS = {
    "active_tasks = in-flight links, per server": """
        SELECT count(*) FROM servers s
        WHERE s.active_tasks <> (SELECT count(*) FROM links l WHERE l.server_id = s.id
                                 AND l.status IN ('queued', 'running', 'connecting'))""",
    "created_links = completed create-phase links, per request": """
        SELECT count(*) FROM requests r
        WHERE r.created_links <> (SELECT count(*) FROM links l WHERE l.request_id = r.id
                                  AND l.phase = 'create' AND l.status = 'completed')""",
    "no pending link with a server": """
        SELECT count(*) FROM links WHERE status = 'pending' AND server_id IS NOT NULL""",
    "no in-flight link without a server": """
        SELECT count(*) FROM links
        WHERE status IN ('queued', 'running', 'connecting') AND server_id IS NULL""",
    "no link both finished and in flight": """
        SELECT count(*) FROM links
        WHERE (completed_at IS NOT NULL AND phase = 'create' AND status <> 'completed')
           OR (status = 'completed' AND completed_at IS NULL)""",
}


async def check(url: str, stats: Stats) -> list[tuple[str, bool, str]]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            results = []
            for name, sql in INVARIANTS.items():
                bad = await conn.fetchval(sql)
                results.append((name, bad == 0, f"{bad} violating row(s)" if bad else "ok"))
            ids = stats.completed_ids
            dup = len(ids) - len(set(ids))
            completed = await conn.fetchval("SELECT count(*) FROM links WHERE status = 'completed'")
            done = await conn.fetchval(
                "SELECT count(*) FROM links WHERE status = 'completed' AND id = ANY($1::uuid[])",
                list(set(ids)),
            )
            ok = dup == 0 and completed == len(set(ids)) == done
            results.append(
                (
                    "links completed by tool servers = completed links, each once",
                    ok,
                    f"{len(ids)} answered 200 ({dup} twice), {completed} completed in the database",
                )
            )
            totals = await conn.fetch("SELECT status, count(*) FROM links GROUP BY status")
            results.append(
                ("links by status", True, ", ".join(f"{r[0]} {r[1]}" for r in sorted(totals)))
            )
    finally:
        await conn.close()
    return results


# --- output ----------------------------------------------------------------------------------


def report(stats: Stats, seconds: float) -> str:
    rows = []
    for op in sorted(stats.latency):
        lat = stats.latency[op]
        codes = Counter({s: n for (o, s), n in stats.status.items() if o == op})
        rows.append(
            [
                op,
                len(lat),
                f"{len(lat) / seconds:.1f}",
                f"{common.percentile(lat, 50) * 1000:.1f}",
                f"{common.percentile(lat, 99) * 1000:.1f}",
                f"{max(lat) * 1000:.0f}",
                " ".join(f"{s}:{n}" for s, n in sorted(codes.items(), key=str)),
            ]
        )
    everything = [x for lat in stats.latency.values() for x in lat]
    codes = Counter()
    for (_, s), n in stats.status.items():
        codes[s] += n
    rows.append(
        [
            "all",
            len(everything),
            f"{len(everything) / seconds:.1f}",
            f"{common.percentile(everything, 50) * 1000:.1f}",
            f"{common.percentile(everything, 99) * 1000:.1f}",
            f"{max(everything, default=0) * 1000:.0f}",
            " ".join(f"{s}:{n}" for s, n in sorted(codes.items(), key=str)),
        ]
    )
    return common.table(
        ["operation", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "statuses"], rows
    )


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(keep: bool) -> Iterator[str]:
    """A new empty database for the run; dropped afterwards unless ``keep``."""
    name = databases.unique_name("assign_load")
    url = asyncio.run(common.create_database(name))
    try:
        yield url
    finally:
        if keep:
            print(f"database kept: {url}")
        else:
            asyncio.run(common.drop_database(name))


async def wait_for_leader(url: str, within: float = 60) -> None:
    """Until the dispatcher holds its leader lock (it is then running, signal handlers set)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + within
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dispatcher took no leadership in {within:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def setup(base: str, admin_key: str, tool_servers: int) -> tuple[list[str], list[str]]:
    """Requests and tool servers through the admin API; (request ids, tool keys)."""
    headers = {"X-API-Key": admin_key}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        requests = []
        for i in range(10):
            response = await http.post(
                f"{ADMIN}/requests",
                json={"service_type": "entity", "name": f"campaign {i}", "priority": i % 3,
                      "website": "https://example.com"},
            )  # fmt: skip
            response.raise_for_status()
            requests.append(response.json()["data"]["id"])
        keys = []
        for i in range(tool_servers):
            response = await http.post(
                f"{ADMIN}/servers",
                json={"name": f"tool-{i:03d}", "service": "tool", "max_threads": 20,
                      "priority": i % 3},
            )  # fmt: skip
            response.raise_for_status()
            keys.append(response.json()["data"]["api_key"])
    return requests, keys


async def run_load(
    bases: list[str], worker_key: str, requests: list[str], tool_keys: list[str], args: Any
) -> tuple[Stats, float]:
    stats = Stats()
    load = Load(bases, worker_key, requests, stats)
    workers = max(0, args.clients - len(tool_keys))
    tasks = [asyncio.create_task(load.tool_client(i, k)) for i, k in enumerate(tool_keys)]
    tasks += [asyncio.create_task(load.worker_client(i)) for i in range(workers)]
    started = time.perf_counter()
    try:
        await asyncio.sleep(args.seconds)
    finally:
        load.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - started
        await load.close()
    return stats, elapsed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (200)")
    parser.add_argument("--seconds", type=float, default=60, help="duration of the load (60)")
    parser.add_argument(
        "--tool-servers", type=int, default=20, help="tool servers, one client each"
    )
    parser.add_argument(
        "--pool-size", type=int, default=10, help="ASSIGN_DB_POOL_SIZE of each process (10)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    if args.tool_servers >= args.clients:
        parser.error("--clients must be more than --tool-servers")
    return args


@dataclass
class Measured:
    """What one run under load gave: the clients' statistics and the CPU time used."""

    stats: Stats
    elapsed: float
    load_before: float
    load_after: float
    cpu_start: dict[str, float]
    client_cpu: float


def run_cluster(cluster: Cluster, url: str, args: argparse.Namespace) -> Measured:
    """Migrate, start two APIs and a dispatcher, set up the fleet and run the load."""
    cluster.cli("migrate")
    admin_key = cluster.cli("admin-key", "create", "--name", "load").split()[-1]
    worker_key = cluster.cli("server", "add", "load-assign", "--service", "assign").split()[-1]
    bases = [cluster.serve("api-1"), cluster.serve("api-2")]
    cluster.start("dispatcher", "dispatch")
    asyncio.run(wait_for_leader(url))
    requests, tool_keys = asyncio.run(setup(bases[0], admin_key, args.tool_servers))
    print(
        f"load: {args.clients} clients ({args.tool_servers} tool servers, "
        f"{args.clients - args.tool_servers} assign clients) for {args.seconds:.0f} s "
        f"on {' and '.join(bases)}, one dispatcher, PostgreSQL {url.rsplit('@', 1)[-1]}"
    )
    load_before = os.getloadavg()[0]
    cpu_start = {p.name: p.cpu_seconds() for p in cluster.procs}
    own = resource.getrusage(resource.RUSAGE_SELF)
    stats, elapsed = asyncio.run(run_load(bases, worker_key, requests, tool_keys, args))
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (own_after.ru_utime + own_after.ru_stime) - (own.ru_utime + own.ru_stime)
    return Measured(stats, elapsed, load_before, os.getloadavg()[0], cpu_start, client_cpu)


def print_usage(cluster: Cluster, measured: Measured) -> None:
    """The machine's load and the CPU time each process used during the run."""
    total = sum(len(v) for v in measured.stats.latency.values())
    cpu = {
        name: seconds - measured.cpu_start.get(name, 0.0)
        for name, seconds in cluster.cpu_at_stop.items()
    }
    used = [f"{name} {seconds:.1f} s" for name, seconds in cpu.items()]
    api_cpu = sum(v for name, v in cpu.items() if name.startswith("api"))
    print(
        f"machine: {os.cpu_count()} CPUs, load average {measured.load_before:.1f} before and "
        f"{measured.load_after:.1f} after the run; CPU time during the run: {', '.join(used)}, "
        f"clients {measured.client_cpu:.1f} s"
        + (f"; API {api_cpu * 1000 / total:.1f} ms of CPU per request" if total else "")
    )
    causes = sum((unavailable(p) for p in cluster.procs), Counter())
    if causes:
        print(f"503 answers by cause (from the API logs): {dict(causes)}")


def checks_of(cluster: Cluster, url: str, stats: Stats) -> list[tuple[str, bool, str]]:
    """The answers, each process's exit and log, then the database's invariants."""
    unexpected = {
        (op, s): n
        for (op, s), n in stats.status.items()
        if (op, s) not in EXPECTED and not (isinstance(s, int) and s < 300)
    }
    checks: list[tuple[str, bool, str]] = [
        (
            "only 2xx answers, and 409 to assigns",
            not unexpected,
            "ok" if not unexpected else f"{unexpected}; e.g. {stats.samples[:3]}",
        )
    ]
    for proc in cluster.procs:
        logged_errors = errors(proc)
        code = cluster.exit_codes.get(proc.name)
        checks.append(
            (
                f"{proc.name}: exit 0 on SIGTERM, no error logged",
                code == 0 and not logged_errors,
                f"exit {code}, {len(logged_errors)} error line(s)"
                + (f": {logged_errors[0][:300]}" if logged_errors else ""),
            )
        )
    return checks + asyncio.run(check(url, stats))


def main() -> int:
    args = parse_args()
    with (
        fresh_database(args.keep) as url,
        tempfile.TemporaryDirectory(prefix="assign-load-") as tmp,
    ):
        cluster = Cluster(url, Path(tmp), args.pool_size)
        try:
            measured = run_cluster(cluster, url, args)
        finally:
            cluster.stop_all()
        print()
        print(report(measured.stats, measured.elapsed))
        print()
        print_usage(cluster, measured)
        print()
        checks = checks_of(cluster, url, measured.stats)
        rows = [["PASS" if ok else "FAIL", name, detail] for name, ok, detail in checks]
        print(common.table(["result", "check", "detail"], rows))
        failed = not all(ok for _, ok, _ in checks)
    print()
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
