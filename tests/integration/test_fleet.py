"""A fleet end to end on PostgreSQL: three ``assign dispatch`` processes and one API process on
one database, simulated tool servers over HTTP, 5,000 links; then the same with the leading
dispatcher killed (SIGKILL) twice mid-run.

Checked: every link ends completed; no attempt (link id, retry_count) is claimed twice; each
link is claimed once per failure plus once, and its retry_count equals its failures; no server
ever holds more than max_threads, neither as the fleet sees it (claimed and not reported) nor in
the database (sampled every 50 ms: active_tasks and in-flight links, equal to each other); every
active_tasks ends at 0; every request ends completed; no process logs an error.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, PG_SKIP
from tests.integration import fleet, light_client
from tests.integration.procs import (
    STARTUP,
    Proc,
    Processes,
    assign_env,
    backend_cpu_seconds,
    errors_logged,
    log_time,
    pg_port,
    run_cli,
    wait_leader,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_ADMIN_URL is None, reason=PG_SKIP),
    pytest.mark.timeout(420),
]

INTERVAL = 0.2
#: the lease of leader.py for this interval (unused on PostgreSQL, where the lock is the lease)
LEASE = max(5.0, 3 * INTERVAL)
TAKEOVER_BOUND = 2 * INTERVAL + LEASE
REQUESTS = 10
#: ASSIGN_TEST_FLEET_LINKS makes a quicker run while working on this file
LINKS = int(os.environ.get("ASSIGN_TEST_FLEET_LINKS", "5000")) // REQUESTS * REQUESTS
THREADS = [4, 5, 6, 6, 6, 6, 6, 7, 8, 8, 10, 10]
#: a guard against a hang: the run takes far less on an unloaded machine
DEADLINE = 300.0
#: no link completed for this long is a stall, reported at once
STALL = 20.0


@dataclass
class Takeover:
    killed: Proc
    successor: Proc
    seconds: float  # from the kill to the lock held by the successor, seen in pg_locks
    logged_seconds: float  # from the kill to the successor's "dispatcher became leader" line


@dataclass
class Run:
    record: fleet.Record
    feed: fleet.Feed
    dispatchers: list[Proc]
    api: Proc
    seconds: float  # from the links' creation to the last request completed
    setup_seconds: float = 0.0  # processes started, keys, servers, requests
    wind_down_seconds: float = 0.0  # the simulated fleet and the sampler stopped
    takeovers: list[Takeover] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used, by process

    def summary(self) -> str:
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in self.cpu.items())
        return (
            f"{LINKS:,} links in {self.seconds:.1f} s (set-up {self.setup_seconds:.1f} s, "
            f"wind-down {self.wind_down_seconds:.1f} s), {len(self.record.claims)} attempts, "
            f"{sum(self.record.failures.values())} failures, {self.record.samples} samples, "
            f"{self.record.unavailable} calls answered 503 and made again, "
            f"peaks {[s.peak for s in self.feed.servers]} of {THREADS}; CPU s: {cpu}"
        )


async def _start(procs: Processes, db: asyncpg.Connection, url: str) -> tuple[Run, str]:
    """Three dispatchers (one of them leading), the API, the keys and the simulated fleet's
    servers and requests; the run to fill in and the API's base URL."""
    env = assign_env(
        url,
        dispatch_interval=INTERVAL,
        server_timeout_minutes=5,
        stale_timeout_minutes=10,
        retry_base_seconds=0.1,
        retry_max_seconds=0.5,
        db_pool_size=4,
    )
    dispatchers = [procs.start(f"dispatch-{i}", env, "dispatch") for i in range(3)]
    (api, base), admin_out, assign_out = await asyncio.gather(
        procs.serve("api", {**env, "ASSIGN_DB_POOL_SIZE": "10"}),
        run_cli(env, "admin-key", "create"),
        run_cli(env, "server", "add", "feeder", "--service", "assign"),
    )
    admin_key = admin_out.strip().splitlines()[-1]
    assign_key = assign_out.strip().splitlines()[-1]
    first, _ = await wait_leader(db, dispatchers, pg_port(url), within=STARTUP)
    assert first is not None, "no dispatcher took the lock"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        feed = await fleet.make_feed(
            http, admin_key=admin_key, assign_key=assign_key, threads=THREADS, requests=REQUESTS
        )
    return Run(fleet.Record(), feed, dispatchers, api, 0.0), base


async def _wait_until_done(
    db: asyncpg.Connection, run: Run, tasks: list[asyncio.Task[None]], started: float
) -> None:
    """Until every link is completed and every request closed; a failure at once when a helper
    task crashed, nothing progressed for STALL seconds or DEADLINE has passed."""
    progress, progressed_at = -1, time.monotonic()
    while True:
        counts = await fleet.link_counts(db)
        done = counts.get("completed", 0)
        if done == LINKS and await fleet.open_requests(db) == 0:
            return
        for task in tasks:  # a crashed helper is a failure now, not at the deadline
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if done != progress:
            progress, progressed_at = done, time.monotonic()
        now = time.monotonic()
        if now - started > DEADLINE or now - progressed_at > STALL:
            cpu = {p.name: round(p.cpu_seconds(), 1) for p in [run.api, *run.dispatchers]}
            cpu["postgres"] = round(await backend_cpu_seconds(db), 1)
            raise AssertionError(
                f"not done after {now - started:.0f} s ({now - progressed_at:.0f} s "
                f"without progress): links {counts}, "
                f"{await fleet.open_requests(db)} request(s) open, "
                f"problems {run.record.problems[:5]}, CPU seconds {cpu}"
            )
        await asyncio.sleep(0.25)


async def run_fleet(
    procs: Processes, db: asyncpg.Connection, url: str, *, kill_at: tuple[float, ...] = ()
) -> Run:
    """Start everything, feed 5,000 links, and (at each fraction of ``kill_at`` of the links
    completed) SIGKILL the leading dispatcher; returns once every request is completed."""
    begun = time.monotonic()
    run, base = await _start(procs, db, url)
    record, feed, port = run.record, run.feed, pg_port(url)
    stop = asyncio.Event()
    extra: list[asyncpg.Connection] = []
    tasks: list[asyncio.Task[None]] = []
    fleet_http = light_client.LightClient("127.0.0.1", int(base.rsplit(":", 1)[1]))
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        try:
            sampler_conn = await asyncpg.connect(url)
            extra.append(sampler_conn)
            tasks.append(asyncio.create_task(fleet.sample(sampler_conn, record, stop)))
            for i, server in enumerate(feed.servers):
                tasks.append(
                    asyncio.create_task(fleet.run_server(fleet_http, server, record, stop, i))
                )
            started = time.monotonic()
            run.setup_seconds = started - begun
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu_before = usage.ru_utime + usage.ru_stime
            await fleet.add_links(http, feed, LINKS // REQUESTS)
            if kill_at:
                killer_conn = await asyncpg.connect(url)
                extra.append(killer_conn)
                tasks.append(
                    asyncio.create_task(_kill_leaders(killer_conn, run, port, kill_at, stop))
                )
            await _wait_until_done(db, run, tasks, started)
            run.seconds = time.monotonic() - started
            run.cpu = {p.name: p.cpu_seconds() for p in [run.api, *run.dispatchers]}
            run.cpu["postgres"] = await backend_cpu_seconds(db)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            run.cpu["test"] = usage.ru_utime + usage.ru_stime - cpu_before
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            fleet_http.close()
            run.wind_down_seconds = time.monotonic() - started - run.seconds
            for conn in extra:
                await conn.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result
    return run


async def _kill_leaders(
    conn: asyncpg.Connection,
    run: Run,
    port: int,
    kill_at: tuple[float, ...],
    stop: asyncio.Event,
) -> None:
    for fraction in kill_at:
        while len(run.record.completed) < fraction * LINKS:
            if stop.is_set():
                return
            await asyncio.sleep(0.02)
        alive = [d for d in run.dispatchers if d.alive()]
        victim, _ = await wait_leader(conn, alive, port, within=5)
        assert victim is not None, "no leader to kill"
        killed_at = time.time()
        victim.send(signal.SIGKILL)
        survivors = [d for d in alive if d is not victim]
        successor, seconds = await wait_leader(conn, survivors, port, within=TAKEOVER_BOUND + 5)
        assert successor is not None, f"no dispatcher took over within {TAKEOVER_BOUND + 5:g} s"
        assert await victim.wait_exit(5) == -signal.SIGKILL
        logged = await successor.wait_logged("dispatcher became leader")
        assert logged, f"{successor} holds the lock but did not log it"
        run.takeovers.append(Takeover(victim, successor, seconds, log_time(logged[-1]) - killed_at))


async def check_run(run: Run, db: asyncpg.Connection) -> None:
    record = run.record
    assert not record.problems, record.problems[:20]
    assert record.samples > 20, "the database was hardly sampled"
    assert not record.duplicate_claims(), record.duplicate_claims()[:20]

    # every link completed once, claimed once per failure plus once
    rows = await db.fetch("SELECT id::text AS id, status, retry_count FROM links")
    assert len(rows) == LINKS
    assert {r["status"] for r in rows} == {"completed"}
    assert sorted(record.completed) == sorted(r["id"] for r in rows)
    claims_per_link = {}
    for link_id, _ in record.claims:
        claims_per_link[link_id] = claims_per_link.get(link_id, 0) + 1
    for r in rows:
        failures = record.failures[r["id"]]
        assert r["retry_count"] == failures, (r["id"], r["retry_count"], failures)
        assert claims_per_link[r["id"]] == failures + 1, r["id"]
    assert sum(record.failures.values()) > 0, "no failure exercised the retries"
    assert len(record.claims) == LINKS + sum(record.failures.values())

    # slots
    for server in run.feed.servers:
        assert server.peak <= server.max_threads, (server.name, server.peak)
        assert server.in_flight == 0, (server.name, server.in_flight)
    servers = await db.fetch("SELECT name, active_tasks FROM servers WHERE service = 'tool'")
    assert {s["name"]: s["active_tasks"] for s in servers} == {s.name: 0 for s in run.feed.servers}

    # requests
    requests = await db.fetch("SELECT status, created_links FROM requests")
    assert [(r["status"], r["created_links"]) for r in requests] == [
        ("completed", LINKS // REQUESTS)
    ] * REQUESTS

    # logs
    for proc in [*run.dispatchers, run.api]:
        assert not errors_logged(proc), (proc, errors_logged(proc)[:3])
    failures = [
        r for r in run.api.records() if r.get("msg") == "request" and r.get("status", 0) >= 500
    ]
    assert not failures, failures[:3]


async def test_three_dispatchers_one_api_5000_links(
    procs: Processes, db: asyncpg.Connection, scratch_db: str
) -> None:
    run = await run_fleet(procs, db, scratch_db)
    await check_run(run, db)
    # one leader from start to end: the others never acted
    leaders = [d for d in run.dispatchers if d.logged("dispatcher became leader")]
    assert len(leaders) == 1, f"the lead changed hands during the run: {leaders}"
    assert len(leaders[0].logged("dispatcher became leader")) == 1
    print(f"\n{run.summary()}")


async def test_leader_killed_twice_mid_run(
    procs: Processes, db: asyncpg.Connection, scratch_db: str
) -> None:
    run = await run_fleet(procs, db, scratch_db, kill_at=(0.3, 0.6))
    await check_run(run, db)
    assert len(run.takeovers) == 2
    for takeover in run.takeovers:
        assert takeover.seconds < TAKEOVER_BOUND, takeover
        assert takeover.logged_seconds < TAKEOVER_BOUND, takeover
    killed = {t.killed.name for t in run.takeovers}
    assert len(killed) == 2 and run.takeovers[1].killed is run.takeovers[0].successor
    takeovers = ", ".join(
        f"{t.seconds * 1000:.0f} ms (log {t.logged_seconds * 1000:.0f} ms)" for t in run.takeovers
    )
    print(f"\n{run.summary()}; two leaders killed, take-over {takeovers}")
