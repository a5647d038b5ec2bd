"""Each step of the dispatcher tick on both databases, with a controllable clock (no sleeps)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from assign.clock import FrozenClock
from assign.db.tables import links, servers
from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.factories import ADMIN, TOOL, WORKER, Factory


async def check_slots(ctx: Context) -> None:
    """Every server's active_tasks equals its queued/running/connecting links."""
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(servers.c.id, servers.c.active_tasks))).all()
        counts = dict(
            (
                await conn.execute(
                    sa.select(links.c.server_id, sa.func.count())
                    .where(links.c.status.in_(["queued", "running", "connecting"]))
                    .group_by(links.c.server_id)
                )
            ).all()
        )
    for server_id, active in rows:
        assert active == counts.get(server_id, 0), server_id


async def heartbeat(factory: Factory, *servers_: dict[str, Any]) -> None:
    for server in servers_:
        response = await factory.client.post(
            f"{TOOL}/heartbeat", json={}, headers=factory.tool(server)
        )
        assert response.status_code == 200


async def statuses(factory: Factory, request: dict[str, Any]) -> dict[str, int]:
    response = await factory.client.get(
        f"{WORKER}/requests/{request['id']}/links/count", headers=factory.worker
    )
    return {c["status"]: c["count"] for c in response.json()["counts"]}


async def no_rate_limit(factory: Factory) -> None:
    response = await factory.client.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"max_posts_per_day": "100000", "cooldown_minutes": "0"}},
        headers=factory.admin,
    )
    assert response.status_code == 200


async def test_assigns_pending_links_up_to_free_slots(ctx: Context, factory: Factory) -> None:
    await no_rate_limit(factory)
    a = await factory.server(max_threads=3, priority=1)
    b = await factory.server(max_threads=2)
    await heartbeat(factory, a, b)
    request = await factory.request()
    await factory.links(request, 10)

    report = await tick(ctx)

    assert report.assigned == 5
    assert (await factory.get_server(a["id"]))["active_tasks"] == 3
    assert (await factory.get_server(b["id"]))["active_tasks"] == 2
    assert await statuses(factory, request) == {"queued": 5, "pending": 5}
    assert (await factory.get_request(request["id"]))["status"] == "running"
    assert (await tick(ctx)).assigned == 0  # no free slot left
    await check_slots(ctx)


async def test_service_types_and_offline_servers_are_respected(
    ctx: Context, factory: Factory
) -> None:
    await no_rate_limit(factory)
    social = await factory.server(max_threads=5, service_types=["social"])
    await factory.server(max_threads=5, status="maintenance")
    request = await factory.request(service_type="entity")
    await factory.links(request, 3)
    assert (await tick(ctx)).assigned == 0
    assert (await factory.get_server(social["id"]))["active_tasks"] == 0


async def test_stale_link_fails_then_is_retried_and_completes(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await no_rate_limit(factory)
    server = await factory.server(max_threads=1)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await heartbeat(factory, server)
    await tick(ctx)
    assert [c["id"] for c in await factory.claim(server)] == [link["id"]]

    clock.advance(minutes=4)
    await heartbeat(factory, server)
    clock.advance(minutes=4)
    await heartbeat(factory, server)
    clock.advance(minutes=8)  # 16 minutes running: past the 15-minute stale timeout
    await heartbeat(factory, server)
    report = await tick(ctx)
    assert report.stale_failed == 1
    failed = await factory.get_link(link["id"], server)
    assert failed["status"] == "failed" and "stale" in failed["error"]
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    await check_slots(ctx)

    # back-off: retry_base 30 s * 2**0 * [0.5, 1] -> due within 30 s, not before 15 s
    clock.advance(seconds=10)
    await heartbeat(factory, server)
    assert (await tick(ctx)).retried == 0
    clock.advance(seconds=21)
    await heartbeat(factory, server)
    report = await tick(ctx)
    assert report.retried == 1 and report.assigned == 1

    (claimed,) = await factory.claim(server)
    assert claimed["retry_count"] == 1
    response = await factory.result(link["id"], server, profile_url="https://p/1")
    assert response.json()["data"]["status"] == "completed"
    report = await tick(ctx)
    assert report.finished == {"completed": 1}
    done = await factory.get_request(request["id"])
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert done["created_links"] == 1
    await check_slots(ctx)


async def test_silent_server_goes_offline_and_its_work_moves(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await no_rate_limit(factory)
    dead = await factory.server(max_threads=2, priority=10)
    request = await factory.request()
    await factory.links(request, 3)
    await heartbeat(factory, dead)
    await tick(ctx)  # 2 links queued on dead
    (running,) = await factory.claim(dead, limit=1)  # 1 running, 1 still queued

    alive = await factory.server(max_threads=5)
    clock.advance(minutes=6)  # past the 5-minute server timeout
    await heartbeat(factory, alive)
    report = await tick(ctx)

    assert report.servers_lost == 1
    assert report.released == 1 and report.lost_failed == 1
    assert (await factory.get_server(dead["id"]))["status"] == "offline"
    assert (await factory.get_server(dead["id"]))["active_tasks"] == 0
    lost = await factory.list_links(request_id=request["id"], status="failed")
    assert [x["id"] for x in lost] == [running["id"]]
    assert lost[0]["error"].startswith("server lost")
    # the released link and the third one went to the live server at once
    assert (await factory.get_server(alive["id"]))["active_tasks"] == 2
    await check_slots(ctx)

    clock.advance(seconds=31)
    await heartbeat(factory, alive)
    report = await tick(ctx)
    assert report.retried == 1 and report.assigned == 1
    assert len(await factory.claim(alive)) == 3
    await check_slots(ctx)


async def test_exhausted_links_are_canceled_and_request_fails(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await no_rate_limit(factory)
    server = await factory.server(max_threads=1)
    request = await factory.request()
    (link,) = await factory.links(request, 1, max_retries=0)
    await heartbeat(factory, server)
    await tick(ctx)
    await factory.claim(server)
    response = await factory.result(link["id"], server, status="failed", error="captcha")
    assert response.status_code == 200
    report = await tick(ctx)
    assert report.exhausted == 1
    assert await statuses(factory, request) == {"canceled": 1}
    assert report.finished == {"failed": 1}
    assert (await factory.get_request(request["id"]))["status"] == "failed"


async def test_connect_request_goes_through_connect_phase(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await no_rate_limit(factory)
    server = await factory.server(max_threads=5)
    request = await factory.request(config={"connect": True})
    created = await factory.links(request, 2, max_retries=0)
    await heartbeat(factory, server)
    await tick(ctx)
    await factory.claim(server)
    await factory.result(created[0]["id"], server, profile_url="https://p/0")
    await factory.result(created[1]["id"], server, status="failed", error="no")
    report = await tick(ctx)  # exhausted one canceled, then the connect step
    assert report.finished == {"connecting": 1}
    assert (await factory.get_request(request["id"]))["status"] == "connecting"
    assert await statuses(factory, request) == {"connect": 1, "canceled": 1}

    (claimed,) = await factory.claim(server)
    assert claimed["status"] == "connecting" and claimed["phase"] == "connect"
    await factory.result(claimed["id"], server, post_url="https://post/0")
    report = await tick(ctx)
    assert report.finished == {"completed": 1}
    done = await factory.get_request(request["id"])
    assert done["status"] == "completed" and done["created_links"] == 1
    await check_slots(ctx)


async def test_connect_request_without_profiles_fails(ctx: Context, factory: Factory) -> None:
    await no_rate_limit(factory)
    server = await factory.server(max_threads=5)
    request = await factory.request(config={"connect": True})
    (link,) = await factory.links(request, 1)
    await heartbeat(factory, server)
    await tick(ctx)
    await factory.claim(server)
    await factory.result(link["id"], server)  # completed, but no profile_url
    report = await tick(ctx)
    assert report.finished == {"failed": 1}
    assert await statuses(factory, request) == {"canceled": 1}


async def test_max_posts_per_day_is_held_exactly(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await factory.client.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"max_posts_per_day": "3", "cooldown_minutes": "0"}},
        headers=factory.admin,
    )
    server = await factory.server(max_threads=50)
    request = await factory.request()
    await factory.links(request, 5, email="acc@example.com")
    await factory.links(request, 2, email="other@example.com")
    await heartbeat(factory, server)

    report = await tick(ctx)
    assert report.assigned == 5  # 3 of acc, 2 of other
    assert report.held_back == 2
    for claimed in await factory.claim(server, limit=50):
        await factory.result(claimed["id"], server)
    assert (await tick(ctx)).assigned == 0  # 3 completed today: the day is full

    # a new day in ASSIGN_TIMEZONE (UTC) frees the account again
    now = clock.now()
    clock.advance(seconds=86400 - (now.hour * 3600 + now.minute * 60 + now.second) + 1)
    await heartbeat(factory, server)
    assert (await tick(ctx)).assigned == 2


async def test_cooldown_spaces_dispatches_of_an_account(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await factory.client.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"max_posts_per_day": "100", "cooldown_minutes": "2"}},
        headers=factory.admin,
    )
    server = await factory.server(max_threads=50)
    request = await factory.request()
    await factory.links(request, 3, email="acc@example.com")
    await heartbeat(factory, server)

    assert (await tick(ctx)).assigned == 1
    clock.advance(seconds=119)
    await heartbeat(factory, server)
    assert (await tick(ctx)).assigned == 0
    clock.advance(seconds=1)
    await heartbeat(factory, server)
    assert (await tick(ctx)).assigned == 1

    # a settings change takes effect on the next tick
    await factory.client.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"cooldown_minutes": "0"}},
        headers=factory.admin,
    )
    assert (await tick(ctx)).assigned == 1
    await check_slots(ctx)
