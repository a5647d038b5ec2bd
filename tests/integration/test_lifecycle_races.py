"""The races of PRODUCT §9 on PostgreSQL, each with two transactions held open at the chosen moment.

One side runs its use case inside a transaction the test keeps open (the use case joins it, see
``Database.run``); the other side starts on a second connection pool and must be seen waiting for
a row lock; then the first commits and the second finishes. Both orders of each pair are run:
whichever goes first, no link is left bound to no server, none of a closed request is queued
again, and ``active_tasks`` stays exact.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from assign.api.schemas.inputs import LinkIn
from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.engine import Database
from assign.dispatcher import steps
from assign.errors import Conflict, InvalidInput
from assign.security.crypto import Cipher
from assign.services import links as links_service
from assign.services import requests as requests_service
from assign.services import servers as servers_service
from assign.services import tool as tool_service
from assign.services.context import Context
from tests.conftest import PG_ADMIN_URL, PG_SKIP, TEST_SECRET, make_settings
from tests.factories import TOOL, WORKER, Factory
from tests.integration.procs import migrated_database
from tests.invariants import assert_active_tasks_consistent

pytestmark = [pytest.mark.postgres]

FIRST = ["held first", "other first"]


@pytest.fixture(scope="module")
async def url(pg_template: str) -> AsyncIterator[str]:
    if PG_ADMIN_URL is None:
        pytest.skip(PG_SKIP)
    async with migrated_database(PG_ADMIN_URL, "assign_race", pg_template) as scratch:
        yield scratch


def _context(url: str, clock: FrozenClock) -> Context:
    settings = make_settings(url)
    return Context(
        db=Database(settings.database_url, pool_size=2),
        settings=settings,
        cipher=Cipher(TEST_SECRET),
        clock=clock,
    )


@pytest.fixture
async def sides(url: str) -> AsyncIterator[tuple[Context, Context]]:
    """Two contexts on the same database, each with its own pool: the held side and the other."""
    clock = FrozenClock()
    held, other = _context(url, clock), _context(url, clock)
    try:
        yield held, other
    finally:
        await held.db.dispose()
        await other.db.dispose()


@pytest.fixture
async def factory(sides: tuple[Context, Context]) -> AsyncIterator[Factory]:
    app = create_app(context=sides[1], migrate=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        yield await Factory.create(sides[1], http)


@pytest.fixture
async def db(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def _waiting(db: asyncpg.Connection) -> None:
    """Until a session of this database waits for a row lock (at most 10 s)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        if await db.fetchval(query):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second transaction never waited for the first")


async def race(
    db: asyncpg.Connection,
    held_ctx: Context,
    held: Callable[[], Awaitable[Any]],
    other: Callable[[], Awaitable[Any]],
) -> tuple[Any, Any]:
    """``held()`` in a transaction kept open until ``other()`` is seen waiting for a lock; then
    committed. (held's result, other's result or the error it raised.)"""
    async with held_ctx.db.transaction():
        first = await held()
        task = asyncio.create_task(other())
        await _waiting(db)
        assert not task.done()
    try:
        second = await asyncio.wait_for(task, 10)
    except (Conflict, InvalidInput) as exc:
        second = exc
    return first, second


async def _one_link(db: asyncpg.Connection, link_id: str) -> asyncpg.Record:
    return await db.fetchrow(
        "SELECT status, server_id, error, phase FROM links WHERE id = $1", uuid.UUID(link_id)
    )


async def _profiled(factory: Factory, server: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    request = await factory.request(status="running")
    [link] = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p.test")
    return request, link


@pytest.mark.parametrize("first", FIRST)
async def test_deletion_against_the_connect_step(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    server = await factory.server()
    request, link = await _profiled(factory, server)
    rid, sid = uuid.UUID(request["id"]), uuid.UUID(server["id"])

    def connect(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: requests_service.connect(ctx, request_id=rid)

    def delete(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: servers_service.delete_server(ctx, server_id=sid)

    if first == "held first":  # the connect step goes first: the deletion cancels the link
        answer, _ = await race(db, held_ctx, connect(held_ctx), delete(other_ctx))
        assert answer["links_connect"] == 1
    else:  # the deletion goes first: the connect step finds no server for the profile
        _, answer = await race(db, held_ctx, delete(held_ctx), connect(other_ctx))
        assert (answer["links_connect"], answer["links_canceled"]) == (0, 1)
    row = await _one_link(db, link["id"])
    assert (row["status"], row["server_id"]) == ("canceled", None)
    await assert_active_tasks_consistent(other_ctx)


@pytest.mark.parametrize("first", FIRST)
async def test_deletion_against_a_connect_phase_retry(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    server = await factory.server()
    request, link = await _profiled(factory, server)
    await factory.client.put(f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker)
    await factory.claim(server)
    await factory.result(link["id"], server, status="failed", error="captcha")
    lid, sid = uuid.UUID(link["id"]), uuid.UUID(server["id"])

    def retry(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: links_service.retry_link(ctx, link_id=lid)

    def delete(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: servers_service.delete_server(ctx, server_id=sid)

    if first == "held first":  # retried to connect on the server, then canceled by the deletion
        answer, _ = await race(db, held_ctx, retry(held_ctx), delete(other_ctx))
        assert answer["status"] == "connect"
    else:  # canceled by the deletion: nothing left to retry
        _, answer = await race(db, held_ctx, delete(held_ctx), retry(other_ctx))
        assert isinstance(answer, Conflict)
    row = await _one_link(db, link["id"])
    assert (row["status"], row["server_id"], row["error"]) == ("canceled", None, "server deleted")


@pytest.mark.parametrize("first", FIRST)
async def test_deletion_against_a_bulk_placement(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    server = await factory.server()
    request = await factory.request()
    sid = uuid.UUID(server["id"])
    items = [LinkIn(request_id=request["id"], service_type="entity", server_id=sid)] * 2

    def place(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: links_service.create_links(ctx, items=items)

    def delete(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: servers_service.delete_server(ctx, server_id=sid)

    count = "SELECT count(*) FROM links WHERE request_id = $1"
    if first == "held first":  # placed: the deletion is refused
        placed, refused = await race(db, held_ctx, place(held_ctx), delete(other_ctx))
        assert placed == 2 and isinstance(refused, Conflict)
        assert await db.fetchval(count, uuid.UUID(request["id"])) == 2
        assert (await factory.get_server(server["id"]))["active_tasks"] == 2
    else:  # deleted: the placement names the server it cannot use, and creates nothing
        _, refused = await race(db, held_ctx, delete(held_ctx), place(other_ctx))
        assert isinstance(refused, InvalidInput)
        assert [d["field"] for d in refused.details or []] == [
            "links[0].server_id",
            "links[1].server_id",
        ]
        assert await db.fetchval(count, uuid.UUID(request["id"])) == 0
    orphans = "SELECT count(*) FROM links WHERE status = 'queued' AND server_id IS NULL"
    assert await db.fetchval(orphans) == 0
    await assert_active_tasks_consistent(other_ctx)


@pytest.mark.parametrize("first", FIRST)
async def test_a_close_against_a_retry(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    server = await factory.server()
    request = await factory.request()
    [link] = await factory.links(request, 1)
    await factory.run_link(link, server, status="failed", error="down")
    lid, rid = uuid.UUID(link["id"]), uuid.UUID(request["id"])

    def retry(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: links_service.retry_link(ctx, link_id=lid)

    def close(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: requests_service.complete(ctx, request_id=rid)

    if first == "held first":  # retried to pending, then canceled by the close
        await race(db, held_ctx, retry(held_ctx), close(other_ctx))
        assert (await _one_link(db, link["id"]))["status"] == "canceled"
    else:  # closed first: the retry is refused, the link stays failed for step 4
        _, refused = await race(db, held_ctx, close(held_ctx), retry(other_ctx))
        assert isinstance(refused, Conflict) and "closed" in refused.message
        assert (await _one_link(db, link["id"]))["status"] == "failed"


@pytest.mark.parametrize("first", FIRST)
async def test_a_close_against_a_bulk_create(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    request = await factory.request()
    rid = uuid.UUID(request["id"])
    items = [LinkIn(request_id=rid, service_type="entity")] * 3

    def create(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: links_service.create_links(ctx, items=items)

    def close(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: requests_service.set_status(ctx, request_id=rid, status="canceled")

    if first == "held first":  # created, then canceled by the close
        await race(db, held_ctx, create(held_ctx), close(other_ctx))
    else:  # closed: the create is refused
        _, refused = await race(db, held_ctx, close(held_ctx), create(other_ctx))
        assert isinstance(refused, Conflict)
    pending = "SELECT count(*) FROM links WHERE request_id = $1 AND status <> 'canceled'"
    assert await db.fetchval(pending, rid) == 0


@pytest.mark.parametrize("first", FIRST)
async def test_a_result_against_the_stale_expiry(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    held_ctx, other_ctx = sides
    server = await factory.server()
    request = await factory.request()
    [link] = await factory.links(request, 1, server_id=server["id"])
    await factory.claim(server)
    sid, lid = uuid.UUID(server["id"]), uuid.UUID(link["id"])
    later = other_ctx.clock.now() + timedelta(minutes=20)  # past the stale timeout

    def report(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: tool_service.report_result(
            ctx, server_id=sid, link_id=lid, status="completed",
            profile_url=None, post_url=None, error=None, details=None,
        )  # fmt: skip

    def expire(ctx: Context) -> Callable[[], Awaitable[Any]]:
        tick = steps.TickReport()
        return lambda: steps.expire_stale_links(ctx, later, tick)

    if first == "held first":  # completed: nothing stale any more
        await race(db, held_ctx, report(held_ctx), expire(other_ctx))
        assert (await _one_link(db, link["id"]))["status"] == "completed"
    else:  # failed as stale: the late result is refused
        _, refused = await race(db, held_ctx, expire(held_ctx), report(other_ctx))
        assert isinstance(refused, Conflict)
        assert (await _one_link(db, link["id"]))["status"] == "failed"
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    await assert_active_tasks_consistent(other_ctx)


async def test_a_result_and_the_lost_server_step_never_deadlock(
    sides: tuple[Context, Context],
    factory: Factory,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The result path locks its link, then its server; step 1 must take the same order. A
    result that holds its link (and has yet to free the server's slot) while step 1 runs: step 1
    waits for the link without holding the server, so the result's server update goes through.
    (With step 1 taking the server first, the two would deadlock.)"""
    _, other_ctx = sides
    server = await factory.server()
    request = await factory.request()
    [link] = await factory.links(request, 1, server_id=server["id"])
    await factory.claim(server)
    sid, lid = uuid.UUID(server["id"]), uuid.UUID(link["id"])
    later = other_ctx.clock.now() + timedelta(minutes=10)  # the server is silent by then
    tick = steps.TickReport()

    caplog.set_level(logging.INFO, logger="assign.db.engine")
    transaction = db.transaction()
    await transaction.start()
    # the result path of services.tool, held after its first statement
    await db.execute(
        "UPDATE links SET status = 'completed', completed_at = now() WHERE id = $1", lid
    )
    task = asyncio.create_task(steps.expire_lost_servers(other_ctx, later, tick))
    await _waiting(db)
    await db.execute("UPDATE servers SET active_tasks = active_tasks - 1 WHERE id = $1", sid)
    await transaction.commit()
    await asyncio.wait_for(task, 10)

    retried = [r for r in caplog.records if r.getMessage() == "transaction retried"]
    assert retried == []  # no deadlock, not even one retried away
    assert tick.lost_failed == 0  # the link had completed (other tests' servers are lost too)
    assert await db.fetchval("SELECT status FROM servers WHERE id = $1", sid) == "offline"
    assert (await _one_link(db, link["id"]))["status"] == "completed"
    await assert_active_tasks_consistent(other_ctx)


async def _held_while(
    db: asyncpg.Connection,
    held_ctx: Context,
    held: Callable[[], Awaitable[Any]],
    other: Callable[[], Awaitable[Any]],
) -> tuple[Any, Any]:
    """``held()`` in a transaction kept open while ``other()`` starts and either waits for a row
    lock or finishes without one (a claim skips locked links); then committed."""
    async with held_ctx.db.transaction():
        first = await held()
        task = asyncio.create_task(other())
        for _ in range(100):
            if task.done() or await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ):
                break
            await asyncio.sleep(0.02)
    return first, await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("first", FIRST)
async def test_maintenance_against_a_claim(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection, first: str
) -> None:
    """A server set to maintenance while it claims: either the claim came first (its links run
    on and finish normally) or the maintenance did (the claim gets nothing and the queued links
    are back in the queue); never a link queued on a server in maintenance or running unclaimed."""
    held_ctx, other_ctx = sides
    server = await factory.server()
    request = await factory.request()
    links = await factory.links(request, 3, server_id=server["id"])
    sid = uuid.UUID(server["id"])

    def maintenance(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: servers_service.set_status(ctx, server_id=sid, status="maintenance")

    def claim(ctx: Context) -> Callable[[], Awaitable[Any]]:
        return lambda: tool_service.claim(ctx, server_id=sid, limit=10)

    if first == "held first":  # maintenance first: nothing to claim, the links are pending
        _, claimed = await _held_while(db, held_ctx, maintenance(held_ctx), claim(other_ctx))
        assert claimed == []
        expected = {("pending", None)}
    else:  # the claim first: its links run on; maintenance releases nothing more
        claimed, _ = await _held_while(db, held_ctx, claim(held_ctx), maintenance(other_ctx))
        assert sorted(str(c["id"]) for c in claimed) == sorted(str(lk["id"]) for lk in links)
        expected = {("running", sid)}
    rows = [await _one_link(db, lk["id"]) for lk in links]
    assert {(r["status"], r["server_id"]) for r in rows} == expected
    assert (await factory.get_server(server["id"]))["status"] == "maintenance"
    # a link placed there explicitly now is accepted, and still not claimed (§9)
    [placed] = await factory.links(await factory.request(), 1, server_id=server["id"])
    assert await tool_service.claim(other_ctx, server_id=sid, limit=10) == []
    assert (await _one_link(db, placed["id"]))["status"] == "queued"
    await assert_active_tasks_consistent(other_ctx)


async def test_the_dispatcher_takes_only_the_slots_left_under_the_server_lock(
    sides: tuple[Context, Context], factory: Factory, db: asyncpg.Connection
) -> None:
    """Step 5 reads free slots without locking the servers, then takes them under each server's
    lock: a slot taken meanwhile (``PUT /links/:id/assign``, held open here) is not taken
    twice, and a server whose row another writer holds is waited for, not skipped."""
    held_ctx, other_ctx = sides
    server = await factory.server(max_threads=2)
    beat = await factory.client.post(f"{TOOL}/heartbeat", headers=factory.tool(server))
    assert beat.status_code == 200
    request = await factory.request()
    explicit, *_ = await factory.links(request, 4)
    sid = uuid.UUID(server["id"])

    async def place() -> Any:
        tick = steps.TickReport()
        await steps.assign_pending(other_ctx, other_ctx.clock.now(), tick)
        return tick

    async def assign() -> Any:
        return await links_service.assign_link(
            held_ctx, link_id=uuid.UUID(explicit["id"]), server_id=sid
        )

    # the dispatcher reads 2 free slots before the explicit assignment commits
    original = steps.repo.free_servers

    async def read_then_assign(conn: Any, **kwargs: Any) -> Any:
        rows = await original(conn, **kwargs)
        assert [r.free for r in rows if r.id == sid] == [2]
        return rows

    steps.repo.free_servers = read_then_assign  # type: ignore[assignment]
    try:
        _, tick = await race(db, held_ctx, assign, place)
    finally:
        steps.repo.free_servers = original  # type: ignore[assignment]
    assert tick.assigned == 1
    queued = await db.fetchval(
        "SELECT count(*) FROM links WHERE server_id = $1 AND status = 'queued'", sid
    )
    assert queued == 2  # the explicit one and one placed by the dispatcher
    assert (await factory.get_server(server["id"]))["active_tasks"] == 2
    await assert_active_tasks_consistent(other_ctx)
