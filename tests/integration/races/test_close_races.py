"""A request closed against a retry and a bulk create of its links."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from assign.api.schemas.inputs import LinkIn
from assign.errors import Conflict
from assign.services import links as links_service
from assign.services import requests as requests_service
from assign.services.context import Context
from tests.factories import Factory
from tests.integration.races.holding import FIRST, one_link, race

pytestmark = [pytest.mark.postgres]


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
        assert (await one_link(db, link["id"]))["status"] == "canceled"
    else:  # closed first: the retry is refused, the link stays failed for step 4
        _, refused = await race(db, held_ctx, close(held_ctx), retry(other_ctx))
        assert isinstance(refused, Conflict) and "closed" in refused.message
        assert (await one_link(db, link["id"]))["status"] == "failed"


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
