"""What the console's pages read (services.console), on both databases."""

from __future__ import annotations

import uuid

from assign.clock import FrozenClock
from assign.services import console
from assign.services.context import Context
from tests.factories import Factory


async def test_request_page_shows_its_own_completions(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    server = await factory.server(max_threads=10)
    mine, other = await factory.request(), await factory.request()
    for link in await factory.links(mine, 2):
        await factory.run_link(link, server)
    clock.advance(minutes=1)
    for link in await factory.links(other, 1):
        await factory.run_link(link, server, status="failed")

    page = await console.request_page(ctx, request_id=uuid.UUID(mine["id"]))
    assert [(m["key"], m["completed"], m["failed"]) for m in page["throughput"]] == [
        (mine["id"], 2, 0)
    ]
    assert page["request"]["counts"] == {"completed": 2}
