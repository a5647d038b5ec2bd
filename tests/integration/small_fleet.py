"""A small simulated fleet through one or more API processes already running: keys made with
the CLI, tool servers spread over the APIs, a few hundred links to the end, then the checks of
tests/integration/test_fleet.py that hold for any run (no attempt claimed twice, no server over
its threads, every link completed, every counter back to 0, every request completed)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import asyncpg
import httpx

from tests.integration import fleet, light_client
from tests.integration.procs import run_cli

#: the dispatcher settings of a fleet run: timeouts short, back-off in tenths of a second
FLEET_SETTINGS = {
    "dispatch_interval": 0.2,
    "retry_base_seconds": 0.1,
    "retry_max_seconds": 0.5,
    "db_pool_size": 4,
}


async def run(
    bases: list[str],
    db_url: str,
    env: dict[str, str],
    *,
    links: int = 400,
    requests: int = 4,
    threads: tuple[int, ...] = (4, 5, 6, 8),
    deadline: float = 180.0,
) -> fleet.Record:
    """Feed ``links`` links through the APIs at ``bases`` until every request is completed
    (``db_url``: the database itself, read by the checks)."""
    admin_out, assign_out = await asyncio.gather(
        run_cli(env, "admin-key", "create"),
        run_cli(env, "server", "add", "feeder", "--service", "assign"),
    )
    admin_key = admin_out.strip().splitlines()[-1]
    assign_key = assign_out.strip().splitlines()[-1]
    record, stop = fleet.Record(), asyncio.Event()
    clients = [_light(base) for base in bases]
    tasks: list[asyncio.Task[None]] = []
    db = await asyncpg.connect(db_url)
    sampler = await asyncpg.connect(db_url)
    try:
        async with httpx.AsyncClient(base_url=bases[0], timeout=60) as http:
            feed = await fleet.make_feed(
                http,
                admin_key=admin_key,
                assign_key=assign_key,
                threads=list(threads),
                requests=requests,
            )
            tasks.append(asyncio.create_task(fleet.sample(sampler, record, stop)))
            for i, server in enumerate(feed.servers):
                client = clients[i % len(clients)]
                tasks.append(asyncio.create_task(fleet.run_server(client, server, record, stop, i)))
            try:
                await fleet.add_links(http, feed, links // requests)
                await _until_done(db, record, tasks, links // requests * requests, deadline)
            finally:
                stop.set()
                results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await check(db, record, feed, links // requests * requests, requests)
    finally:
        for client in clients:
            client.close()
        await sampler.close()
        await db.close()
    return record


def _light(base: str) -> light_client.LightClient:
    parts = urlsplit(base)
    return light_client.LightClient(parts.hostname or "127.0.0.1", parts.port or 80)


async def _until_done(
    db: asyncpg.Connection,
    record: fleet.Record,
    tasks: list[asyncio.Task[None]],
    links: int,
    deadline: float,
) -> None:
    started = time.monotonic()
    while True:
        counts = await fleet.link_counts(db)
        if counts.get("completed", 0) == links and await fleet.open_requests(db) == 0:
            return
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if time.monotonic() - started > deadline:
            raise AssertionError(
                f"not done after {deadline:.0f} s: links {counts}, problems {record.problems[:5]}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.sleep(0.25)


async def check(
    db: asyncpg.Connection, record: fleet.Record, feed: fleet.Feed, links: int, requests: int
) -> None:
    assert not record.problems, record.problems[:20]
    assert not record.duplicate_claims(), record.duplicate_claims()[:20]
    rows = await db.fetch("SELECT id::text AS id, status, retry_count FROM links")
    assert len(rows) == links and {r["status"] for r in rows} == {"completed"}
    assert sorted(record.completed) == sorted(r["id"] for r in rows)
    for r in rows:
        assert r["retry_count"] == record.failures[r["id"]], r["id"]
    for server in feed.servers:
        assert server.peak <= server.max_threads, (server.name, server.peak)
    tasks = await db.fetch("SELECT active_tasks FROM servers WHERE service = 'tool'")
    assert {t["active_tasks"] for t in tasks} == {0}
    statuses = await db.fetch("SELECT status, created_links FROM requests")
    assert [(r["status"], r["created_links"]) for r in statuses] == [
        ("completed", links // requests)
    ] * requests
