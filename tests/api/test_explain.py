"""GET /api/v1/admin/links/:id/explain: each reason, in §11's order, and the dispatcher agrees."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from assign.clock import FrozenClock
from assign.db.tables import requests
from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.dispatcher.test_tick import heartbeat, no_rate_limit
from tests.factories import ADMIN, WORKER, Factory, new_id
from tests.invariants import check_attempts


async def explain(factory: Factory, link: dict[str, Any]) -> dict[str, Any]:
    response = await factory.client.get(
        f"{ADMIN}/links/{link['id']}/explain", headers=factory.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data: dict[str, Any] = body["data"]
    assert set(data) <= {"status", "reason", "until", "detail"}
    assert isinstance(data["detail"], str) and data["detail"].endswith(".")
    return data


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def rate_limit(factory: Factory, per_day: int, cooldown: float) -> None:
    response = await factory.client.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"max_posts_per_day": str(per_day), "cooldown_minutes": str(cooldown)}},
        headers=factory.admin,
    )
    assert response.status_code == 200


async def test_fleet_reasons_in_order(ctx: Context, clock: FrozenClock, factory: Factory) -> None:
    await no_rate_limit(factory)
    request = await factory.request(service_type="entity")
    (link,) = await factory.links(request, 1)
    assert (await explain(factory, link))["reason"] == "no_server_for_service_type"

    social = await factory.server(max_threads=2, service_types=["social"])
    await heartbeat(factory, social)
    assert (await explain(factory, link))["reason"] == "no_server_for_service_type"

    server = await factory.server(max_threads=1)  # accepts every type, never sent a heartbeat
    why = await explain(factory, link)
    assert why["reason"] == "no_live_server" and "until" not in why
    await heartbeat(factory, server)
    clock.advance(minutes=6)  # its heartbeat is now older than the 5-minute server timeout
    assert (await explain(factory, link))["reason"] == "no_live_server"
    await heartbeat(factory, server, social)

    other = await factory.request(priority=5)
    (blocker,) = await factory.links(other, 1)
    assert (await factory.assign(blocker["id"], server)).status_code == 200
    assert (await explain(factory, link))["reason"] == "servers_full"
    assert (await tick(ctx)).assigned == 0  # the dispatcher agrees: nowhere to put it

    await factory.claim(server)
    await factory.result(blocker["id"], server)
    why = await explain(factory, link)
    assert why == {"status": "pending", "reason": "in_line", "detail": why["detail"]}
    assert why["detail"].startswith("0 links are ahead")
    assert (await tick(ctx)).assigned == 1  # and it is the next to go
    queued = await explain(factory, link)
    assert queued["status"] == "queued" and queued["reason"] is None
    await check_attempts(ctx)


async def test_request_closed_comes_first(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    # closed behind the API's back, so its pending link is still there to be asked about
    async with ctx.db.transaction() as conn:
        await conn.execute(requests.update().values(status="completed"))
    why = await explain(factory, link)
    assert why["reason"] == "request_closed" and "completed" in why["detail"]


async def test_in_line_counts_links_ahead(ctx: Context, factory: Factory) -> None:
    server = await factory.server(max_threads=1)
    await heartbeat(factory, server)
    low = await factory.request(priority=0)
    high = await factory.request(priority=3)
    first, second, third = await factory.links(low, 3)
    urgent = await factory.links(high, 2)
    for link in urgent:
        assert (await explain(factory, link))["reason"] == "in_line"
    counts = {}
    for link in (first, second, third, *urgent):
        detail = (await explain(factory, link))["detail"]
        counts[link["id"]] = int(detail.split()[0])
    # dispatch order: higher priority first, then oldest, then id (one bulk shares a time)
    ordered = sorted(counts, key=counts.__getitem__)
    assert [counts[i] for i in ordered] == [0, 1, 2, 3, 4]
    assert set(ordered[:2]) == {u["id"] for u in urgent}
    await tick(ctx)
    (placed,) = await factory.list_links(status="queued")
    assert placed["id"] == ordered[0]  # the link explain put first is the one dispatched


async def _bulk(factory: Factory, request: dict[str, Any], n: int) -> None:
    items = [
        {"request_id": request["id"], "service_type": request["service_type"], "site_name": "s"}
    ] * n
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )
    assert response.status_code == 200, response.text


async def test_in_line_counts_up_to_a_thousand(clock: FrozenClock, factory: Factory) -> None:
    """Links ahead by priority, by age and in the same bulk create (by id) are counted
    together, up to 1,000; one more is "more than 1,000"."""
    server = await factory.server(max_threads=1)
    await heartbeat(factory, server)
    high, low = await factory.request(priority=1), await factory.request(priority=0)
    await _bulk(factory, low, 400)
    clock.advance(minutes=1)
    await _bulk(factory, low, 2)  # one bulk: the same time, ordered by id
    newest = clock.now()
    ties = [
        lk
        for lk in await factory.list_links(request_id=low["id"])
        if at(lk["created_at"]) == newest
    ]
    later = max(ties, key=lambda lk: uuid.UUID(lk["id"]))  # the other one is ahead of it
    assert len(ties) == 2
    await _bulk(factory, high, 599)
    assert (await explain(factory, later))[
        "detail"
    ] == "1,000 links are ahead of it in dispatch order."
    await _bulk(factory, high, 1)
    assert (await explain(factory, later))["detail"] == (
        "More than 1,000 links are ahead of it in dispatch order."
    )


@pytest.mark.parametrize("settings_overrides", [{"timezone": "Asia/Ho_Chi_Minh"}])
async def test_daily_limit_until_next_local_midnight(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await rate_limit(factory, per_day=1, cooldown=0)
    server = await factory.server(max_threads=5)
    await heartbeat(factory, server)
    request = await factory.request()
    done, waiting = await factory.links(request, 2, email="acct@example.com")
    await factory.run_link(done, server)
    why = await explain(factory, waiting)
    assert why["reason"] == "daily_limit" and "acct@example.com" in why["detail"]
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    local = clock.now().astimezone(tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tz)
    assert at(why["until"]) == midnight
    assert (await tick(ctx)).assigned == 0  # the dispatcher holds it back too


async def test_cooldown_until_last_dispatch_plus_cooldown(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await rate_limit(factory, per_day=100, cooldown=5)
    server = await factory.server(max_threads=5)
    await heartbeat(factory, server)
    request = await factory.request()
    first, second = await factory.links(request, 2, email="slow@example.com")
    assert (await tick(ctx)).assigned == 1
    dispatched_at = clock.now()
    (waiting,) = [x for x in (first, second) if (await explain(factory, x))["status"] == "pending"]
    why = await explain(factory, waiting)
    assert why["reason"] == "cooldown"
    assert at(why["until"]) == dispatched_at + timedelta(minutes=5)

    clock.advance(minutes=4)
    await heartbeat(factory, server)
    assert (await tick(ctx)).assigned == 0
    assert (await explain(factory, waiting))["reason"] == "cooldown"
    clock.advance(minutes=1)
    await heartbeat(factory, server)
    assert (await explain(factory, waiting))["reason"] == "in_line"
    assert (await tick(ctx)).assigned == 1


async def test_no_live_server_wins_over_daily_limit(factory: Factory) -> None:
    await rate_limit(factory, per_day=0, cooldown=0)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.server(max_threads=1)  # never a heartbeat
    assert (await explain(factory, link))["reason"] == "no_live_server"


async def test_failed_link_with_retries_left_waits_for_back_off(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    (retryable,) = await factory.links(request, 1)
    await factory.run_link(retryable, server, status="failed", error="captcha")
    (final,) = await factory.links(request, 1, max_retries=0)
    await factory.run_link(final, server, status="failed", error="captcha")
    why = await explain(factory, final)
    assert why["status"] == "failed" and why["reason"] is None and "until" not in why
    why = await explain(factory, retryable)
    assert why["status"] == "failed" and why["reason"] == "retry_backoff"
    # back-off: retry_base 30 s * 2**0 * [0.5, 1]
    assert (
        clock.now() + timedelta(seconds=15)
        <= at(why["until"])
        <= clock.now() + timedelta(seconds=30)
    )
    clock.advance(seconds=31)
    await heartbeat(factory, server)
    await tick(ctx)  # step 3 retries it once until has passed
    assert (await explain(factory, retryable))["status"] in ("pending", "queued")


async def test_explain_unknown_and_unauthorized(factory: Factory) -> None:
    response = await factory.client.get(f"{ADMIN}/links/{new_id()}/explain", headers=factory.admin)
    assert response.status_code == 404
    response = await factory.client.get(f"{ADMIN}/links/nope/explain", headers=factory.admin)
    assert response.status_code in (400, 404)
    response = await factory.client.get(f"{ADMIN}/links/{new_id()}/explain", headers=factory.worker)
    assert response.status_code == 401
