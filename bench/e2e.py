"""End to end: no-op links through their whole life, Assign against its peers and raw SQL.

    PYTHONPATH=src python bench/e2e.py --links 20000          # the full table (several minutes)
    PYTHONPATH=src python bench/e2e.py --links 3000 --only assign-pg-worker,raw-pg-batched
    PYTHONPATH=src python bench/e2e.py --rounds 3 --only raw-sqlite-batched,assign-sqlite-worker

Every run: ``--servers`` simulated tool servers with ``--slots`` slots each take ``--links``
pre-created no-op links (claim, report at once), timed from the first claim to the last
completion. Assign runs as real processes (``assign serve``; or two API processes plus
``assign dispatch``), with the load generator in this process, through HTTP one result call
per link (the seed API's way, with waiting claims) or through ``assign.worker`` (batches).
After each Assign run the invariants are checked: all completed, none claimed twice,
``active_tasks`` 0, ``created_links`` exact. Then, with every server's claim waiting, a few
small bulk creates measure the time to the first claim that gets one of their links.
procrastinate (``pip install .[bench]``) and raw SQL on the same database give the context:
per link, batched, and batched with Assign's placement step (``raw-*-placed``: pending links
queued on a server, then claimed and completed, three transactions a batch), which the
targets do not use but which shows how much of the gap is that step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from e2e_data import Fleet, Run, check_postgres, check_sqlite, seed_postgres, seed_sqlite
from e2e_http import Http1
from e2e_procrastinate import procrastinate_run
from e2e_raw import raw_pg, raw_sqlite
from e2e_service import BackendCpu, Service

from assign.worker import Result, Worker

TOOL = "/api/v1/tool"
WORKER = "/api/v1/worker"


# --- processes -------------------------------------------------------------------------------


def _peak_rss_mb(pids: list[int]) -> float:
    peak = 0.0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
    return peak


# --- data ------------------------------------------------------------------------------------


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


async def _no_pids() -> list[int]:
    return []


# --- output ----------------------------------------------------------------------------------


def _ms(values: list[float], p: float) -> str:
    return f"{common.percentile(values, p) * 1000:.0f}" if values else "-"


def _references(name: str) -> tuple[str, str, str, str]:
    """The runs a run is compared with: the raw batched and per-link ceilings of its engine,
    procrastinate c4, and the raw batched ceiling with the placement step."""
    engine = "sqlite" if "sqlite" in name else "pg"
    return (
        f"raw-{engine}-batched",
        f"raw-{engine}-per-link",
        "procrastinate-c4",
        f"raw-{engine}-placed",
    )


def report(runs: list[Run]) -> str:
    """Every run, with its ratios to the runs of the same round."""
    by_round = {(r.round, r.name): r for r in runs}

    def ratio(run: Run, other: str) -> str:
        ref = by_round.get((run.round, other))
        return f"{run.rate / ref.rate:.2f}" if ref else "-"

    rows = []
    for r in runs:
        ceiling, per_link, peer, _ = _references(r.name)
        rows.append([
            str(r.round), r.name, f"{r.rate:,.0f}", ratio(r, ceiling), ratio(r, per_link), ratio(r, peer),
            f"{r.requests / r.links:.2f}" if r.requests else "-",
            f"{r.api_cpu / r.links * 1000:.2f}" if r.api_cpu == r.api_cpu else "-",
            f"{r.db_cpu / r.links * 1000:.2f}" if r.db_cpu == r.db_cpu else "-",
            f"{r.bench_cpu / r.links * 1000:.2f}" if r.bench_cpu == r.bench_cpu else "-",
            str(r.backends or "-"),
            f"{_ms(r.claims, 50)}/{_ms(r.claims, 99)}", f"{_ms(r.results, 50)}/{_ms(r.results, 99)}",
            _ms(r.first_claim, 50), f"{r.rss_mb:.0f}" if r.rss_mb == r.rss_mb else "-", r.checks or "-",
        ])  # fmt: skip
    headers = ["round", "run", "links/s", "÷ raw batched", "÷ raw per link", "÷ procrastinate c4",
               "requests/link", "API CPU ms/link", "DB CPU ms/link", "load CPU ms/link",
               "DB backends", "claim p50/p99 ms",
               "result p50/p99 ms", "create→claim p50 ms", "API RSS MB", "invariants"]  # fmt: skip
    return common.table(headers, rows)


def summary(runs: list[Run]) -> str:
    """Each run's median over the rounds, the ratios of the medians (and each round's ratio),
    the median bulk create to first claim, the largest RSS and whether every round's
    invariants held."""
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(r.name, []).append(r)
    median = {name: statistics.median(r.rate for r in rs) for name, rs in by_name.items()}
    rate = {(r.round, r.name): r.rate for r in runs}

    def ratio(name: str, other: str) -> str:
        if other not in median or other == name:
            return "-"
        rounds = [
            f"{rate[(r.round, name)] / rate[(r.round, other)]:.2f}"
            for r in by_name[name]
            if (r.round, other) in rate
        ]
        return f"{median[name] / median[other]:.2f} ({' / '.join(rounds)})"

    rows = []
    for name, rs in by_name.items():
        ceiling, per_link, peer, placed = _references(name)
        probes = [p for r in rs for p in r.first_claim]
        rss = [r.rss_mb for r in rs if r.rss_mb == r.rss_mb]
        held = [r.checks.startswith("ok") and "none claimed twice" in r.checks for r in rs]
        rows.append([
            name, f"{median[name]:,.0f}", " / ".join(f"{r.rate:,.0f}" for r in rs),
            ratio(name, ceiling), ratio(name, per_link), ratio(name, peer),
            ratio(name, placed), _ms(probes, 50), f"{max(rss):.0f}" if rss else "-",
            ("all held" if all(held) else "NOT HELD") if any(r.checks for r in rs) else "-",
        ])  # fmt: skip
    headers = ["run", "median links/s", "by round", "÷ raw batched (by round)",
               "÷ raw per link (by round)", "÷ procrastinate c4 (by round)",
               "÷ raw placed (by round)", "create→claim p50 ms", "max API RSS MB", "invariants"]  # fmt: skip
    return common.table(headers, rows)


#: in the order a full run takes them: each Assign run close after the ceilings it is compared
#: with (the machine's speed drifts over minutes, and a round is some minutes long)
RUNS: dict[str, Callable[[argparse.Namespace], Awaitable[Run]]] = {
    "procrastinate-c1": lambda a: procrastinate_run("procrastinate-c1", 1, a),
    "procrastinate-c4": lambda a: procrastinate_run("procrastinate-c4", 4, a),
    "raw-pg-per-link": lambda a: raw_pg("raw-pg-per-link", False, a),
    "assign-pg-http": lambda a: assign_run("assign-pg-http", "pg", "http", a),
    "assign-pg-2api-http": lambda a: assign_run("assign-pg-2api-http", "pg", "http", a, two=True),
    "raw-pg-batched": lambda a: raw_pg("raw-pg-batched", True, a),
    "raw-pg-placed": lambda a: raw_pg("raw-pg-placed", True, a, placed=True),
    "assign-pg-worker": lambda a: assign_run("assign-pg-worker", "pg", "worker", a),
    "assign-pg-2api-worker": lambda a: assign_run(
        "assign-pg-2api-worker", "pg", "worker", a, two=True
    ),
    "raw-sqlite-per-link": lambda a: asyncio.to_thread(raw_sqlite, "raw-sqlite-per-link", False, a),
    "assign-sqlite-http": lambda a: assign_run("assign-sqlite-http", "sqlite", "http", a),
    "raw-sqlite-batched": lambda a: asyncio.to_thread(raw_sqlite, "raw-sqlite-batched", True, a),
    "raw-sqlite-placed": lambda a: asyncio.to_thread(
        lambda: raw_sqlite("raw-sqlite-placed", True, a, placed=True)
    ),
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
    parser.add_argument(
        "--rounds", type=int, default=1, help="run them all this many times, interleaved"
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown or args.rounds < 1:
        parser.error(f"unknown run names {unknown}" if unknown else "--rounds must be 1 or more")
    conn = await asyncpg.connect(common.ADMIN_URL)
    print(await common.machine_line(conn))
    await conn.close()
    print(f"{args.links:,} no-op links, {args.servers} tool servers x {args.slots} slots\n")
    runs = []
    for round_ in range(1, args.rounds + 1):
        for name in names:
            run = await RUNS[name](args)
            run.round = round_
            print(
                f"round {round_} {name}: {run.rate:,.0f} links/s ({run.seconds:.1f} s) "
                f"{run.checks}",
                flush=True,
            )
            runs.append(run)
    print()
    print(report(runs))
    if args.rounds > 1:
        print(
            f"\nMedians of {args.rounds} rounds (ratios of the medians; each round's in brackets)\n"
        )
        print(summary(runs))


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main())
