"""A server deleted against the connect step, a connect-phase retry and a bulk placement onto it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from assign.api.schemas.inputs import LinkIn
from assign.errors import Conflict, InvalidInput
from assign.services import links as links_service
from assign.services import requests as requests_service
from assign.services import servers as servers_service
from assign.services.context import Context
from tests.factories import WORKER, Factory
from tests.integration.races.holding import FIRST, one_link, race
from tests.invariants import assert_active_tasks_consistent

pytestmark = [pytest.mark.postgres]


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
    row = await one_link(db, link["id"])
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
    row = await one_link(db, link["id"])
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
