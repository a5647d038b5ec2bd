"""PRODUCT §9 "The connect phase is a new unit of work that keeps the account's history", on both
databases."""

from __future__ import annotations

from typing import Any

from assign.clock import FrozenClock
from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.api.test_closed_requests import beat
from tests.factories import ADMIN, WORKER, Factory

EMAIL = "poster@example.com"


async def stats(factory: Factory, request: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {"email": EMAIL, **({"request_id": request["id"]} if request else {})}
    response = await factory.client.get(
        f"{WORKER}/links/account-stats", params=params, headers=factory.worker
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def connect(factory: Factory, request: dict[str, Any]) -> dict[str, Any]:
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_entering_connect_keeps_completed_at_and_the_accounts_counts(
    factory: Factory, clock: FrozenClock
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request(status="running")
    profiled, bare = await factory.links(request, 2, email=EMAIL)
    done = await factory.run_link(profiled, server, profile_url="https://p.test/1")
    await factory.run_link(bare, server)  # no profile: the connect step cancels it
    clock.advance(minutes=1)
    before = await stats(factory, request)
    assert (before["today_count"], before["total_completed"]) == (2, 2)

    assert (await connect(factory, request))["links_connect"] == 1

    after = await stats(factory, request)
    for name in ("today_count", "total_completed", "last_post_at", "request_completed"):
        assert after[name] == before[name], name
    [moved] = await factory.list_links(request_id=request["id"], status="connect")
    assert moved["completed_at"] == done["completed_at"]
    # the connect attempt is a new post of the account: counted when it completes too
    clock.advance(minutes=1)
    [claimed] = await factory.claim(server)
    assert claimed["id"] == profiled["id"]
    response = await factory.result(profiled["id"], server, post_url="https://post.test/1")
    assert response.json()["data"]["completed_at"] != done["completed_at"]
    final = await stats(factory, request)
    assert (final["today_count"], final["total_completed"]) == (2, 2)
    assert final["last_post_at"] == response.json()["data"]["completed_at"]


async def test_the_daily_limit_counts_completions_whatever_their_status_now(
    ctx: Context, factory: Factory
) -> None:
    response = await factory.client.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"max_posts_per_day": "2", "cooldown_minutes": "0"}},
        headers=factory.admin,
    )
    assert response.status_code == 200
    server = await factory.server(max_threads=5)
    await beat(factory, server)
    request = await factory.request(status="running")
    links = await factory.links(request, 2, email=EMAIL)
    for link in links:
        await factory.run_link(link, server)  # two posts today, neither with a profile
    assert (await connect(factory, request))["links_canceled"] == 2  # canceled, yet they count
    other = await factory.request()
    await factory.links(other, 1, email=EMAIL)

    report = await tick(ctx)

    assert (report.assigned, report.held_back) == (0, 1)


async def test_entering_connect_resets_retry_count(factory: Factory) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request(status="running")
    [link] = await factory.links(request, 1, max_retries=3)
    await factory.run_link(link, server, status="failed", error="down")
    retried = await factory.client.put(f"{WORKER}/links/{link['id']}/retry", headers=factory.worker)
    assert retried.json()["data"]["retry_count"] == 1
    await factory.run_link(link, server, profile_url="https://p.test/1")

    await connect(factory, request)

    [moved] = await factory.list_links(request_id=request["id"], status="connect")
    assert (moved["retry_count"], moved["max_retries"]) == (0, 3)


async def test_a_create_phase_retry_clears_both_urls(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    [link] = await factory.links(request, 1)
    await factory.run_link(
        link, server, status="failed", profile_url="https://p.test", post_url="https://post.test"
    )
    response = await factory.client.put(
        f"{WORKER}/links/{link['id']}/retry", headers=factory.worker
    )
    data = response.json()["data"]
    assert (data["status"], data["profile_url"], data["post_url"]) == ("pending", None, None)


async def test_the_connect_step_leaves_no_create_phase_link_behind(factory: Factory) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request(status="running")
    links = await factory.links(request, 6)
    await factory.run_link(links[0], server, profile_url="https://p.test/0")  # -> connect
    await factory.run_link(links[1], server, profile_url="")  # completed, no profile
    await factory.run_link(links[2], server, status="failed", profile_url="https://p.test/2")
    assert (await factory.assign(links[3]["id"], server)).status_code == 200  # queued
    await factory.claim(server)
    assert (await factory.assign(links[4]["id"], server)).status_code == 200  # running after claim
    await factory.claim(server)
    # links[5] stays pending; links[3], links[4] are running now

    answer = await connect(factory, request)

    assert (answer["links_connect"], answer["links_canceled"]) == (1, 5)
    rows = await factory.list_links(request_id=request["id"], status="connect,canceled")
    assert {r["id"]: r["status"] for r in rows} == {
        links[0]["id"]: "connect",
        **{link["id"]: "canceled" for link in links[1:]},
    }
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    assert await connect(factory, request) == {
        "success": True, "updated": True, "links_connect": 0, "links_canceled": 0
    }  # fmt: skip
