"""Real concurrency on PostgreSQL: many clients against `assign serve` with two worker processes.

Assign and claim must hold under contention: no server over-filled, no link assigned or claimed
twice, and ``active_tasks`` exact afterwards.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from assign.app import create_app
from assign.clock import Clock
from assign.db.engine import Database
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.conftest import PG_ADMIN_URL, TEST_SECRET, make_settings
from tests.factories import TOOL, WORKER, Factory
from tests.integration.procs import (
    Processes,
    assign_env,
    free_port,
    migrated_database,
    wait_ready,
)
from tests.invariants import assert_active_tasks_consistent

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: the ports these tests may bind
PORTS = range(8451, 8500)
CLIENTS = 32


@pytest.fixture(scope="module")
async def scratch_url(pg_template: str) -> AsyncIterator[str]:
    """A new migrated database for this module (``postgresql://``), dropped at the end."""
    assert PG_ADMIN_URL is not None
    async with migrated_database(PG_ADMIN_URL, "assign_conc", pg_template) as url:
        yield url


@pytest.fixture(scope="module")
async def base_url(
    scratch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """`assign serve --no-dispatcher --workers 2` on the module's database."""
    env = assign_env(scratch_url, log_level="WARNING", db_pool_size=8)
    processes = Processes(tmp_path_factory.mktemp("serve"))
    try:
        for _ in range(5):
            port = free_port(PORTS)
            proc = processes.start(
                "serve", env, "serve", "--no-dispatcher", "--port", str(port), "--workers", "2"
            )
            base = f"http://127.0.0.1:{port}"
            if await wait_ready(proc, base):
                yield base
                return
            proc.close()
        raise AssertionError("assign serve never answered")
    finally:
        processes.close()


@pytest.fixture(scope="module")
async def ctx(scratch_url: str) -> AsyncIterator[Context]:
    """Assign's use cases in the test process, on the module's database."""
    settings = make_settings(scratch_url)
    database = Database(settings.database_url, pool_size=2)
    try:
        yield Context(db=database, settings=settings, cipher=Cipher(TEST_SECRET), clock=Clock())
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
async def factory(ctx: Context) -> AsyncIterator[Factory]:
    """Test data made through Assign's API served in the test process (ASGI, no socket)."""
    app = create_app(context=ctx, migrate=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        yield await Factory.create(ctx, http)


@pytest.fixture
async def db(scratch_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(scratch_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _clients(
    base: str, work: Callable[[int, httpx.AsyncClient], Awaitable[list[Any]]]
) -> list[Any]:
    """Run ``work(i, client)`` for CLIENTS clients at once, each with its own connections."""
    start = asyncio.Event()

    async def one(i: int) -> list[Any]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            await start.wait()
            return await work(i, http)

    tasks = [asyncio.create_task(one(i)) for i in range(CLIENTS)]
    await asyncio.sleep(0.05)
    start.set()
    results: list[Any] = []
    for outcome in await asyncio.gather(*tasks):
        results.extend(outcome)
    return results


async def test_concurrent_assigns_fill_every_slot_once(
    factory: Factory, ctx: Context, base_url: str, db: asyncpg.Connection
) -> None:
    servers = [await factory.server(max_threads=3) for _ in range(10)]
    request = await factory.request()
    links = await factory.links(request, 1000)
    assert len(links) == 1000
    ids = [link["id"] for link in links]
    # every client first fights over the same 10 links, then takes its share of the others
    hot, cold = ids[:10], ids[10:]
    rng = random.Random(7)
    plans = [rng.sample(hot, len(hot)) + cold[i::CLIENTS] for i in range(CLIENTS)]
    worker = {"X-API-Key": factory.assign_key}

    async def work(i: int, http: httpx.AsyncClient) -> list[tuple[str, str, int]]:
        out = []
        for link_id in plans[i]:
            server = rng.choice(servers)["id"]
            response = await http.put(
                f"{WORKER}/links/{link_id}/assign", json={"server_id": server}, headers=worker
            )
            out.append((link_id, server, response.status_code))
        return out

    outcomes = await _clients(base_url, work)
    statuses = Counter(code for _, _, code in outcomes)
    assert statuses[200] == 30, statuses
    assert set(statuses) == {200, 409}, statuses
    assigned = [(link_id, server) for link_id, server, code in outcomes if code == 200]
    assert len({link_id for link_id, _ in assigned}) == 30  # no link assigned twice
    assert Counter(server for _, server in assigned) == {s["id"]: 3 for s in servers}

    rid = uuid.UUID(request["id"])
    rows = await db.fetch(
        "SELECT id::text, server_id::text FROM links WHERE status = 'queued' AND request_id = $1",
        rid,
    )
    assert sorted((r["id"], r["server_id"]) for r in rows) == sorted(assigned)
    pending = "SELECT count(*) FROM links WHERE status = 'pending' AND request_id = $1"
    assert await db.fetchval(pending, rid) == 970
    tasks = await db.fetch(
        "SELECT active_tasks FROM servers WHERE id = ANY($1::uuid[])",
        [uuid.UUID(s["id"]) for s in servers],
    )
    assert [r["active_tasks"] for r in tasks] == [3] * 10
    await assert_active_tasks_consistent(ctx)


async def test_concurrent_claims_take_each_link_once(
    factory: Factory, ctx: Context, base_url: str, db: asyncpg.Connection
) -> None:
    server = await factory.server(max_threads=400)
    request = await factory.request()
    queued = await factory.links(request, 400, server_id=server["id"])
    assert {link["status"] for link in queued} == {"queued"}
    tool = factory.tool(server)
    rng = random.Random(11)

    async def work(_: int, http: httpx.AsyncClient) -> list[str]:
        got: list[str] = []
        while True:
            limit = rng.randint(1, 9)
            response = await http.post(f"{TOOL}/links/claim", json={"limit": limit}, headers=tool)
            assert response.status_code == 200, response.text
            batch = response.json()["data"]
            if not batch:
                return got
            assert len(batch) <= limit
            assert all(link["status"] == "running" for link in batch)
            got.extend(link["id"] for link in batch)

    claimed = await _clients(base_url, work)
    assert len(claimed) == 400
    assert len(set(claimed)) == 400  # each exactly once
    assert set(claimed) == {link["id"] for link in queued}
    running = "SELECT count(*) FROM links WHERE status = 'running' AND server_id = $1"
    assert await db.fetchval(running, uuid.UUID(server["id"])) == 400
    await assert_active_tasks_consistent(ctx)
    assert (await factory.get_server(server["id"]))["active_tasks"] == 400


async def test_concurrent_connect_claims_never_overfill(
    factory: Factory, ctx: Context, base_url: str, db: asyncpg.Connection
) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request(status="running")
    links = await factory.links(request, 40, server_id=server["id"])
    assert len(await factory.claim(server, limit=1000)) == 40
    for link in links:
        response = await factory.result(link["id"], server, profile_url="https://p")
        assert response.status_code == 200
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.json()["links_connect"] == 40
    tool = factory.tool(server)

    async def work(_: int, http: httpx.AsyncClient) -> list[str]:
        got: list[str] = []
        for _ in range(3):
            response = await http.post(f"{TOOL}/links/claim", json={"limit": 2}, headers=tool)
            assert response.status_code == 200, response.text
            assert len(response.json()["data"]) <= 2
            got.extend(link["id"] for link in response.json()["data"])
        return got

    claimed = await _clients(base_url, work)
    assert len(claimed) == len(set(claimed)) == 10  # one per free slot, each once
    sid = uuid.UUID(server["id"])
    connecting = "SELECT count(*) FROM links WHERE status = 'connecting' AND server_id = $1"
    assert await db.fetchval(connecting, sid) == 10
    assert await db.fetchval("SELECT active_tasks FROM servers WHERE id = $1", sid) == 10
    await assert_active_tasks_consistent(ctx)
