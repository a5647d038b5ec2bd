"""What the console's pages read (services.console), on both databases."""

from __future__ import annotations

import uuid
from typing import Any

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


async def test_overview_chart_and_servers_hour_sum_the_fleet(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    """The Overview's chart: one point a minute for the whole fleet; the Servers page: each
    server's results of the last hour."""
    first, second = await factory.server(max_threads=10), await factory.server(max_threads=10)
    request = await factory.request()
    a, b, c, d = await factory.links(request, 4)
    await factory.run_link(a, first)
    await factory.run_link(b, second, status="failed")
    clock.advance(minutes=1)
    await factory.run_link(c, second)

    chart = (await console.overview(ctx))["throughput"]
    assert [(m["completed"], m["failed"]) for m in chart] == [(1, 1), (1, 0)]
    assert all(set(m) == {"minute", "completed", "failed"} for m in chart)

    def hour(servers: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
        return {str(s["id"]): (s["completed_hour"], s["failed_hour"]) for s in servers}

    assert hour(await console.servers_page(ctx))[second["id"]] == (1, 1)
    clock.advance(minutes=59)  # the first minute leaves the hour
    await factory.run_link(d, first)
    got = hour(await console.servers_page(ctx))
    assert (got[first["id"]], got[second["id"]]) == ((1, 0), (1, 0))
