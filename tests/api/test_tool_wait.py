"""Tool API: claims that wait for work (``wait_seconds``), claims as heartbeats, servers that get
nothing (maintenance, offline), and the wake-ups between results, dispatcher and claims."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa

from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.tables import servers
from assign.dispatcher.steps import tick
from assign.services import wake
from assign.services.context import Context
from tests.factories import TOOL, Factory
from tests.invariants import assert_active_tasks_consistent


def _stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")  # type: ignore[no-any-return]


async def _claim(factory: Factory, server: dict[str, Any], body: Any) -> Any:
    return await factory.client.post(f"{TOOL}/links/claim", json=body, headers=factory.tool(server))


async def _until_waiting(ctx: Context, server: dict[str, Any], n: int = 1) -> None:
    server_id = uuid.UUID(server["id"])
    for _ in range(500):
        if ctx.hub.waiting(server_id) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the claim never started waiting")


async def test_waiting_claim_is_woken_by_the_dispatcher(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    started = time.monotonic()
    call = asyncio.create_task(_claim(factory, server, {"limit": 5, "wait_seconds": 10}))
    await _until_waiting(ctx, server)
    links = await factory.links(request, 2)
    report = await tick(ctx)  # the claim was the server's heartbeat: it takes work
    assert report.assigned == 2
    response = await call
    assert response.status_code == 200, response.text
    claimed = response.json()["data"]
    assert sorted(c["id"] for c in claimed) == sorted(lk["id"] for lk in links)
    assert all(c["status"] == "running" for c in claimed)
    assert time.monotonic() - started < 5
    await assert_active_tasks_consistent(ctx)


async def test_waiting_claim_is_woken_by_an_explicit_placement(
    factory: Factory, ctx: Context
) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    call = asyncio.create_task(_claim(factory, server, {"wait_seconds": 10}))
    await _until_waiting(ctx, server)
    assert (await factory.assign(link["id"], server)).status_code == 200
    response = await asyncio.wait_for(call, 5)
    assert [c["id"] for c in response.json()["data"]] == [link["id"]]


async def test_waiting_claim_answers_at_once_when_work_is_ready(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200
    started = time.monotonic()
    response = await _claim(factory, server, {"wait_seconds": 30})
    assert [c["id"] for c in response.json()["data"]] == [link["id"]]
    assert time.monotonic() - started < 2


async def test_waiting_claim_times_out_empty(factory: Factory, ctx: Context) -> None:
    server = await factory.server()
    other = await factory.server()
    request = await factory.request()
    started = time.monotonic()
    call = asyncio.create_task(_claim(factory, server, {"wait_seconds": 0.5}))
    await _until_waiting(ctx, server)
    # work for another server does not end this one's wait
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], other)).status_code == 200
    response = await call
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": [], "total": 0}
    assert 0.5 <= time.monotonic() - started < 5
    assert ctx.hub.waiting(uuid.UUID(server["id"])) == 0


@pytest.mark.parametrize("status", ["maintenance", "offline"])
async def test_server_not_online_gets_nothing_at_once(
    factory: Factory, ctx: Context, clock: FrozenClock, status: str
) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200
    # a link left on the server as it changed status (the next tick sends it elsewhere)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            servers.update().where(servers.c.id == sa.bindparam("sid")).values(status=status),
            {"sid": uuid.UUID(server["id"])},
        )
    before = await factory.get_server(server["id"])
    clock.advance(minutes=1)
    for body in ({"limit": 5}, {"limit": 5, "wait_seconds": 20}):
        started = time.monotonic()
        response = await _claim(factory, server, body)
        assert response.status_code == 200
        assert response.json() == {"success": True, "data": [], "total": 0}
        assert time.monotonic() - started < 2
    after = await factory.get_server(server["id"])
    assert after == before  # nothing changed: no heartbeat, no activity
    assert (await factory.get_link(link["id"], server))["status"] == "queued"


async def test_claim_is_a_heartbeat_of_an_online_server(
    factory: Factory, clock: FrozenClock
) -> None:
    server = await factory.server()
    assert (await factory.get_server(server["id"]))["last_health_check"] is None
    now = clock.advance(minutes=2)
    assert await factory.claim(server) == []
    got = await factory.get_server(server["id"])
    assert got["last_health_check"][:19] == _stamp(now)
    assert got["status"] == "online"


async def test_claim_of_a_client_that_went_away_claims_nothing(
    factory: Factory, ctx: Context
) -> None:
    server = await factory.server()
    request = await factory.request()
    app = create_app(context=ctx, migrate=False)
    body = orjson.dumps({"limit": 5, "wait_seconds": 10})
    left = asyncio.Event()
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": f"{TOOL}/links/claim", "raw_path": f"{TOOL}/links/claim".encode(),
        "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1), "server": ("t", 80),
        "headers": [(b"content-type", b"application/json"), (b"x-api-key", server["api_key"].encode()),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    call = asyncio.create_task(app(scope, receive, send))
    await _until_waiting(ctx, server)
    (link,) = await factory.links(request, 1)
    left.set()  # the client goes away as its work arrives
    await tick(ctx)
    await asyncio.wait_for(call, 5)
    assert (await factory.get_link(link["id"], server))["status"] == "queued"
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    await assert_active_tasks_consistent(ctx)


@pytest.mark.parametrize("wait", [-1, 30.5, "5", True, None, [1]])
async def test_bad_wait_seconds(factory: Factory, wait: Any) -> None:
    server = await factory.server()
    response = await _claim(factory, server, {"limit": 1, "wait_seconds": wait})
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["field"] == "wait_seconds"


@pytest.mark.parametrize("wait", [0, 0.2, 1])
async def test_good_wait_seconds(factory: Factory, wait: Any) -> None:
    server = await factory.server()
    response = await _claim(factory, server, {"limit": 1, "wait_seconds": wait})
    assert response.status_code == 200, response.text


async def test_results_wake_the_dispatcher(factory: Factory, ctx: Context) -> None:
    server = await factory.server()
    request = await factory.request()
    a, b = await factory.links(request, 2)
    for link in (a, b):
        assert (await factory.assign(link["id"], server)).status_code == 200
    await factory.claim(server)
    ctx.wake.clear()
    assert (await factory.result(a["id"], server)).status_code == 200
    assert ctx.wake.is_set()
    ctx.wake.clear()
    body = {"results": [{"id": b["id"], "status": "completed"}]}
    response = await factory.client.put(
        f"{TOOL}/links/results", json=body, headers=factory.tool(server)
    )
    assert response.json()["updated"] == 1
    assert ctx.wake.is_set()


async def _running_link_and_listener(
    factory: Factory, ctx: Context
) -> tuple[dict[str, Any], dict[str, Any], asyncpg.Connection]:
    """A server running one link, and a connection of its own to LISTEN on (PostgreSQL)."""
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200
    await factory.claim(server)
    dsn = ctx.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return server, link, await asyncpg.connect(dsn)


@pytest.mark.postgres
@pytest.mark.parametrize("db_kind", ["postgres"], indirect=True)
async def test_results_notify_dispatchers_of_other_processes(
    factory: Factory, ctx: Context
) -> None:
    """On PostgreSQL the freed slots reach a dispatcher elsewhere as NOTIFY assign_wake."""
    server, link, listener = await _running_link_and_listener(factory, ctx)
    heard = asyncio.Event()
    try:
        await listener.add_listener(wake.WAKE_CHANNEL, lambda *_: heard.set())
        assert (await factory.result(link["id"], server)).status_code == 200
        await asyncio.wait_for(heard.wait(), 5)
    finally:
        await listener.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_kind", ["postgres"], indirect=True)
async def test_results_send_no_notify_while_the_dispatcher_here_leads(
    factory: Factory, ctx: Context
) -> None:
    """The leading dispatcher in this process is woken in process; dispatchers elsewhere only
    stand by, so no NOTIFY (each serialises its commit on the notification lock)."""
    server, link, listener = await _running_link_and_listener(factory, ctx)
    heard = asyncio.Event()
    ctx.hub.leading_here = True
    try:
        await listener.add_listener(wake.WAKE_CHANNEL, lambda *_: heard.set())
        ctx.wake.clear()
        assert (await factory.result(link["id"], server)).status_code == 200
        assert ctx.wake.is_set()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(heard.wait(), 0.5)
    finally:
        ctx.hub.leading_here = False
        await listener.close()
