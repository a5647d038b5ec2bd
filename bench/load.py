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

The processes are in ``load_cluster.py``, the clients in ``load_clients.py``, the checks in
``load_checks.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import httpx
from load_checks import checks_of
from load_clients import ADMIN, Load, Stats
from load_cluster import Cluster, unavailable, wait_for_leader

from assign.testing import databases

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
