"""Worker API: link listings, assign, bulk create, retry, mark-final-failed and account stats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.services.context import Context
from tests.factories import WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent

LINK_KEYS = {
    "id", "request_id", "service_type", "server_id", "site_id", "site_name", "email", "username",
    "about", "status", "phase", "retry_count", "max_retries", "error", "profile_url", "post_url",
    "details", "assigned_at", "started_at", "completed_at", "created_at", "updated_at",
}  # fmt: skip


async def _get(factory: Factory, path: str, **params: Any) -> Any:
    return await factory.client.get(f"{WORKER}{path}", params=params, headers=factory.worker)


async def _put(factory: Factory, path: str, json: Any = None) -> Any:
    return await factory.client.put(f"{WORKER}{path}", json=json, headers=factory.worker)


async def _bulk(factory: Factory, items: list[dict[str, Any]]) -> Any:
    return await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def _failed(
    factory: Factory, request: dict[str, Any], server: dict[str, Any], **values: Any
) -> dict[str, Any]:
    (link,) = await factory.links(request, 1, **values)
    return await factory.run_link(link, server, status="failed", error="site down")


# --- GET /links ------------------------------------------------------------------------------


async def test_list_links_shape_and_default_pending_without_server(factory: Factory) -> None:
    server = await factory.server()
    site = await factory.site()
    request = await factory.request(priority=4)
    response = await _bulk(
        factory,
        [
            {
                "request_id": request["id"],
                "service_type": "entity",
                "site_id": site,
                "site_name": "example.com",
                "email": "user@gmail.com",
                "username": "user123",
                "password": "pass",
                "about": "Bio",
                "max_retries": 5,
                "details": {"key": "value"},
            },
            {"request_id": request["id"], "service_type": "entity", "server_id": server["id"]},
        ],
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "created": 2}

    response = await _get(factory, "/links")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["total"] == 1
    (link,) = body["data"]
    assert set(link) == LINK_KEYS  # no password, no internal columns
    assert link["request_id"] == request["id"]
    assert (link["service_type"], link["status"], link["phase"]) == ("entity", "pending", "create")
    assert link["server_id"] is None and link["site_id"] == site
    assert (link["site_name"], link["email"], link["username"], link["about"]) == (
        "example.com",
        "user@gmail.com",
        "user123",
        "Bio",
    )
    assert (link["retry_count"], link["max_retries"]) == (0, 5)
    assert link["details"] == {"key": "value"}
    assert link["assigned_at"] is None and link["started_at"] is None
    assert "pass" not in response.text.replace("password", "")

    queued = (await _get(factory, "/links", status="queued")).json()["data"]
    assert [q["server_id"] for q in queued] == [server["id"]]


async def test_list_links_filters_and_order(factory: Factory, clock: FrozenClock) -> None:
    s1 = await factory.server()
    low = await factory.request(priority=1)
    high = await factory.request(priority=8, service_type="social")
    old_low = (await factory.links(low, 1))[0]
    clock.advance(minutes=1)
    new_low = (await factory.links(low, 1))[-1]
    clock.advance(minutes=1)
    old_high = (await factory.links(high, 1))[0]
    clock.advance(minutes=1)
    new_high = (await factory.links(high, 1))[-1]

    assert _ids(await factory.list_links()) == [
        old_high["id"],
        new_high["id"],
        old_low["id"],
        new_low["id"],
    ]
    assert _ids(await factory.list_links(limit=2)) == [old_high["id"], new_high["id"]]
    assert _ids(await factory.list_links(request_id=low["id"])) == [old_low["id"], new_low["id"]]
    assert _ids(await factory.list_links(service_type="social")) == [old_high["id"], new_high["id"]]

    assert (await factory.assign(new_low["id"], s1)).status_code == 200
    assert _ids(await factory.list_links(server_id=s1["id"], status="queued")) == [new_low["id"]]
    assert _ids(await factory.list_links(server_id=s1["id"])) == []
    both = await factory.list_links(status="pending,queued", request_id=low["id"])
    assert _ids(both) == [old_low["id"], new_low["id"]]

    response = await _get(factory, "/links", status="waiting")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "status"
    response = await _get(factory, "/links", request_id="not-a-uuid")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "request_id"


async def test_list_links_stale_uses_timeout(factory: Factory, clock: FrozenClock) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    first, second, waiting = await factory.links(request, 3)
    assert (await factory.assign(first["id"], server)).status_code == 200
    await factory.claim(server)
    clock.advance(minutes=10)
    assert (await factory.assign(second["id"], server)).status_code == 200
    await factory.claim(server)

    async def stale(**params: Any) -> list[str]:
        response = await _get(factory, "/links", stale="true", **params)
        assert response.status_code == 200, response.text
        return _ids(response.json()["data"])

    assert await stale() == []
    clock.advance(minutes=6)  # first: 16 minutes, second: 6 minutes
    assert await stale() == [first["id"]]
    assert await stale(timeout_minutes=5) == [first["id"], second["id"]]
    assert await stale(timeout_minutes=5, status="pending") == [first["id"], second["id"]]
    assert await stale(timeout_minutes=30) == []
    assert await stale(timeout_minutes=5, server_id=new_id()) == []
    assert await stale(timeout_minutes=5, request_id=request["id"], limit=1) == [first["id"]]
    assert waiting["id"] not in await stale(timeout_minutes=0)


async def test_stale_includes_connecting(factory: Factory, clock: FrozenClock) -> None:
    server = await factory.server()
    request = await factory.request(status="running")
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p")
    assert (await _put(factory, f"/requests/{request['id']}/connect")).status_code == 200
    assert [c["status"] for c in await factory.claim(server)] == ["connecting"]
    clock.advance(minutes=20)
    response = await _get(factory, "/links", stale="true")
    assert [(item["id"], item["status"]) for item in response.json()["data"]] == [
        (link["id"], "connecting")
    ]


# --- PUT /links/:id/assign -------------------------------------------------------------------


async def test_assign_pending_link(factory: Factory, ctx: Context, clock: FrozenClock) -> None:
    server = await factory.server(max_threads=2)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    now = clock.advance(minutes=1)
    response = await factory.assign(link["id"], server)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == LINK_KEYS
    assert (data["id"], data["status"], data["server_id"]) == (link["id"], "queued", server["id"])
    assert data["assigned_at"][:19] == now.strftime("%Y-%m-%dT%H:%M:%S")
    got = await factory.get_server(server["id"])
    assert (got["active_tasks"], got["avail_slots"]) == (1, 1)
    await assert_active_tasks_consistent(ctx)


async def test_assign_conflicts(factory: Factory, ctx: Context) -> None:
    request = await factory.request()
    links = await factory.links(request, 3)
    server = await factory.server(max_threads=1)
    assert (await factory.assign(links[0]["id"], server)).status_code == 200

    async def conflict(link: dict[str, Any], target: dict[str, Any]) -> str:
        response = await factory.assign(link["id"], target)
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["success"] is False
        return body["error"]  # type: ignore[no-any-return]

    # not pending any more
    assert "queued" in await conflict(links[0], await factory.server())
    # full
    assert "slot" in await conflict(links[1], server)
    # offline / maintenance
    assert "offline" in await conflict(links[1], await factory.server(status="offline"))
    assert "maintenance" in await conflict(links[1], await factory.server(status="maintenance"))
    # service type not accepted
    picky = await factory.server(service_types=["social", "blog20"])
    assert "entity" in await conflict(links[1], picky)
    # an assign server takes no links
    assert "assign" in await conflict(links[1], {"id": factory.assign_server_id})

    # a server that lists the type accepts it
    fine = await factory.server(service_types=["entity"])
    assert (await factory.assign(links[1]["id"], fine)).status_code == 200
    assert (await factory.get_server(picky["id"]))["active_tasks"] == 0
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    await assert_active_tasks_consistent(ctx)


async def test_assign_not_found_and_bad_input(factory: Factory) -> None:
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    server = await factory.server()

    response = await factory.assign(new_id(), server)
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Link not found"}
    response = await factory.assign(link["id"], {"id": new_id()})
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Server not found"}

    response = await _put(factory, f"/links/{link['id']}/assign", {})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "server_id"
    response = await _put(factory, f"/links/{link['id']}/assign", {"server_id": "nope"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "server_id"
    response = await _put(factory, "/links/nope/assign", {"server_id": server["id"]})
    assert response.status_code in (400, 404)
    assert (await factory.list_links())[0]["status"] == "pending"


# --- POST /links/bulk ------------------------------------------------------------------------


async def test_bulk_is_all_or_nothing(factory: Factory) -> None:
    request = await factory.request()
    good = {"request_id": request["id"], "service_type": "entity"}
    missing = new_id()
    response = await _bulk(factory, [good, {"request_id": missing, "service_type": "entity"}, good])
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["details"] == [{"field": "links[1].request_id", "message": "request not found"}]
    assert await factory.list_links() == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"service_type": "entity"}, "links[1].request_id"),
        ({"request_id": "x", "service_type": "entity"}, "links[1].request_id"),
        ({"request_id": None}, "links[1].service_type"),
        ({"request_id": None, "service_type": "video"}, "links[1].service_type"),
        ({"request_id": None, "service_type": "entity", "max_retries": -1}, "links[1].max_retries"),
        ({"request_id": None, "service_type": "entity", "server_id": "x"}, "links[1].server_id"),
    ],
)
async def test_bulk_validation_names_the_link(
    factory: Factory, bad: dict[str, Any], field: str
) -> None:
    request = await factory.request()
    if "request_id" in bad and bad["request_id"] is None:
        bad = {**bad, "request_id": request["id"]}
    good = {"request_id": request["id"], "service_type": "entity"}
    response = await _bulk(factory, [good, bad])
    assert response.status_code == 400, response.text
    assert field in {d["field"] for d in response.json()["details"]}
    assert await factory.list_links() == []


async def test_bulk_size_limits(factory: Factory) -> None:
    request = await factory.request()
    item = {"request_id": request["id"], "service_type": "entity"}
    response = await _bulk(factory, [])
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "links"
    response = await _bulk(factory, [item] * 5001)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "links"
    response = await factory.client.post(f"{WORKER}/links/bulk", json={}, headers=factory.worker)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "links"
    assert await factory.list_links() == []

    response = await _bulk(factory, [item] * 5000)
    assert response.status_code == 200
    assert response.json() == {"success": True, "created": 5000}
    counts = (await _get(factory, f"/requests/{request['id']}/links/count")).json()
    assert counts["total"] == 5000


async def test_bulk_with_server_starts_queued_and_counts(factory: Factory, ctx: Context) -> None:
    request = await factory.request()
    server = await factory.server(max_threads=1)
    offline = await factory.server(status="offline")
    items = [
        {"request_id": request["id"], "service_type": "entity", "server_id": server["id"]},
        {"request_id": request["id"], "service_type": "entity", "server_id": server["id"]},
        {"request_id": request["id"], "service_type": "entity", "server_id": offline["id"]},
        {"request_id": request["id"], "service_type": "entity"},
    ]
    response = await _bulk(factory, items)
    assert response.status_code == 200
    assert response.json() == {"success": True, "created": 4}
    # an explicit placement: neither status nor free slots are checked
    got = await factory.get_server(server["id"])
    assert (got["active_tasks"], got["avail_slots"]) == (2, 0)
    assert (await factory.get_server(offline["id"]))["active_tasks"] == 1
    queued = await factory.list_links(status="queued")
    assert sorted(q["server_id"] for q in queued) == sorted(
        [server["id"], server["id"], offline["id"]]
    )
    assert all(q["assigned_at"] is not None for q in queued)
    assert len(await factory.list_links()) == 1
    await assert_active_tasks_consistent(ctx)


async def test_bulk_server_must_be_a_tool_server(factory: Factory) -> None:
    request = await factory.request()
    for server_id in (factory.assign_server_id, new_id()):
        items = [
            {"request_id": request["id"], "service_type": "entity"},
            {"request_id": request["id"], "service_type": "entity", "server_id": server_id},
        ]
        response = await _bulk(factory, items)
        assert response.status_code == 400
        assert [d["field"] for d in response.json()["details"]] == ["links[1].server_id"]
    assert await factory.list_links() == []


# --- retry -----------------------------------------------------------------------------------


async def test_retryable_lists_failed_with_retries_left(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    social = await factory.request(service_type="social")
    retryable = await _failed(factory, request, server)
    other = await _failed(factory, social, server)
    await _failed(factory, request, server, max_retries=0)  # exhausted
    await factory.links(request, 1)  # pending

    response = await _get(factory, "/links/retryable")
    assert response.status_code == 200
    body = response.json()
    assert set(_ids(body["data"])) == {retryable["id"], other["id"]}
    assert body["total"] == 2
    assert all(item["status"] == "failed" for item in body["data"])
    assert _ids(
        (await _get(factory, "/links/retryable", service_type="social")).json()["data"]
    ) == [other["id"]]
    assert _ids(
        (await _get(factory, "/links/retryable", request_id=request["id"])).json()["data"]
    ) == [retryable["id"]]
    assert len((await _get(factory, "/links/retryable", limit=1)).json()["data"]) == 1


async def test_retry_create_phase_goes_back_to_pending(factory: Factory, ctx: Context) -> None:
    server = await factory.server()
    request = await factory.request()
    link = await _failed(factory, request, server, max_retries=2)
    assert link["server_id"] == server["id"]
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0

    response = await _put(factory, f"/links/{link['id']}/retry")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["status"], data["retry_count"], data["server_id"]) == ("pending", 1, None)
    assert data["phase"] == "create" and data["started_at"] is None
    assert _ids(await factory.list_links()) == [link["id"]]

    # fail again: retry_count 1 < 2, retryable once more; then exhausted
    await factory.run_link(data, server, status="failed")
    assert (await _put(factory, f"/links/{link['id']}/retry")).json()["data"]["retry_count"] == 2
    await factory.run_link(data, server, status="failed")
    response = await _put(factory, f"/links/{link['id']}/retry")
    assert response.status_code == 409
    assert "retries" in response.json()["error"]
    await assert_active_tasks_consistent(ctx)


async def test_retry_connect_phase_keeps_server(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request(status="running")
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p")
    assert (await _put(factory, f"/requests/{request['id']}/connect")).status_code == 200
    (claimed,) = await factory.claim(server)
    assert claimed["status"] == "connecting"
    assert (await factory.result(link["id"], server, status="failed")).status_code == 200

    data = (await _put(factory, f"/links/{link['id']}/retry")).json()["data"]
    assert (data["status"], data["phase"], data["server_id"], data["retry_count"]) == (
        "connect",
        "connect",
        server["id"],
        1,
    )


async def test_retry_conflicts_and_not_found(factory: Factory) -> None:
    request = await factory.request()
    (pending,) = await factory.links(request, 1)
    response = await _put(factory, f"/links/{pending['id']}/retry")
    assert response.status_code == 409
    assert "pending" in response.json()["error"]
    response = await _put(factory, f"/links/{new_id()}/retry")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Link not found"}


async def test_bulk_retry_counts_only_retryable(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    a = await _failed(factory, request, server)
    b = await _failed(factory, request, server)
    exhausted = await _failed(factory, request, server, max_retries=0)
    (pending,) = await factory.links(request, 1)
    ids = [a["id"], b["id"], b["id"], exhausted["id"], pending["id"], new_id()]
    response = await _put(factory, "/links/bulk-retry", {"link_ids": ids})
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 2}
    assert set(_ids(await factory.list_links(request_id=request["id"]))) == {
        a["id"],
        b["id"],
        pending["id"],
    }
    response = await _put(factory, "/links/bulk-retry", {"link_ids": [a["id"]]})
    assert response.json() == {"success": True, "updated": 0}
    response = await _put(factory, "/links/bulk-retry", {"link_ids": []})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "link_ids"
    response = await _put(factory, "/links/bulk-retry", {"link_ids": ["x"]})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "link_ids[0]"


async def test_mark_final_failed(factory: Factory) -> None:
    server = await factory.server()
    r1 = await factory.request()
    r2 = await factory.request()
    e1 = await _failed(factory, r1, server, max_retries=0)
    e2 = await _failed(factory, r2, server, max_retries=0)
    e3 = await _failed(factory, r2, server, max_retries=0)
    retryable = await _failed(factory, r1, server)

    response = await _put(factory, "/links/mark-final-failed", {"request_id": r2["id"]})
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 2}
    canceled = await factory.list_links(status="canceled")
    assert set(_ids(canceled)) == {e2["id"], e3["id"]}

    response = await factory.client.put(f"{WORKER}/links/mark-final-failed", headers=factory.worker)
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 1}
    assert set(_ids(await factory.list_links(status="canceled"))) == {e1["id"], e2["id"], e3["id"]}
    assert _ids(await factory.list_links(status="failed")) == [retryable["id"]]

    response = await _put(factory, "/links/mark-final-failed", {})
    assert response.json() == {"success": True, "updated": 0}
    response = await _put(factory, "/links/mark-final-failed", {"request_id": "x"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "request_id"


# --- GET /links/account-stats ----------------------------------------------------------------


async def _stats(factory: Factory, **params: Any) -> dict[str, Any]:
    response = await _get(factory, "/links/account-stats", **params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_account_stats_requires_email(factory: Factory) -> None:
    for params in ({}, {"email": ""}):
        response = await _get(factory, "/links/account-stats", **params)
        assert response.status_code == 400
        body = response.json()
        assert body["success"] is False
        assert body["details"] == [{"field": "email", "message": "is required"}]


async def test_account_stats_counts(factory: Factory, clock: FrozenClock) -> None:
    clock.current = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    server = await factory.server(max_threads=10)
    email = "user@gmail.com"
    r1 = await factory.request()
    r2 = await factory.request()
    yesterday = (await factory.links(r1, 1, email=email))[0]
    clock.current = datetime(2025, 11, 30, 23, 0, tzinfo=UTC)
    await factory.run_link(yesterday, server)
    clock.current = datetime(2025, 12, 1, 9, 30, tzinfo=UTC)
    done = await factory.links(r2, 2, email=email)
    for link in done:
        await factory.run_link(link, server)
    clock.current = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    pending = await factory.links(r2, 3, email=email)
    assert (await factory.assign(pending[0]["id"], server)).status_code == 200
    assert (await factory.assign(pending[1]["id"], server)).status_code == 200
    await factory.claim(server, limit=1)  # one running, one queued, one pending
    failed = (await factory.links(r1, 1, email=email))[0]
    await factory.run_link(failed, server, status="failed")
    await factory.links(r1, 2, email="someone@else.com")

    assert await _stats(factory, email=email) == {
        "success": True,
        "email": email,
        "pending_count": 3,
        "today_count": 2,
        "total_completed": 3,
        "last_post_at": "2025-12-01T09:30:00Z",
        "request_pending": 0,
        "request_completed": 0,
    }
    stats = await _stats(factory, email=email, request_id=r2["id"])
    assert (stats["request_pending"], stats["request_completed"]) == (3, 2)
    stats = await _stats(factory, email=email, request_id=r1["id"])
    assert (stats["request_pending"], stats["request_completed"]) == (0, 1)
    assert await _stats(factory, email="nobody@example.com") == {
        "success": True,
        "email": "nobody@example.com",
        "pending_count": 0,
        "today_count": 0,
        "total_completed": 0,
        "last_post_at": None,
        "request_pending": 0,
        "request_completed": 0,
    }


@pytest.mark.parametrize("settings_overrides", [{"timezone": "Asia/Ho_Chi_Minh"}])
async def test_account_stats_today_uses_assign_timezone(
    factory: Factory, clock: FrozenClock
) -> None:
    # local midnight of 2025-12-02 in UTC+7 is 2025-12-01T17:00Z
    server = await factory.server(max_threads=10)
    request = await factory.request()
    before, after = await factory.links(request, 2, email="a@b.c")
    clock.current = datetime(2025, 12, 1, 16, 30, tzinfo=UTC)
    await factory.run_link(before, server)
    clock.current = datetime(2025, 12, 1, 18, 0, tzinfo=UTC)
    await factory.run_link(after, server)
    clock.current = datetime(2025, 12, 1, 20, 0, tzinfo=UTC)
    stats = await _stats(factory, email="a@b.c")
    assert (stats["today_count"], stats["total_completed"]) == (1, 2)
    assert stats["last_post_at"] == "2025-12-01T18:00:00Z"


async def test_account_stats_today_in_utc_by_default(factory: Factory, clock: FrozenClock) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request()
    before, after = await factory.links(request, 2, email="a@b.c")
    clock.current = datetime(2025, 12, 1, 16, 30, tzinfo=UTC)
    await factory.run_link(before, server)
    clock.current = datetime(2025, 12, 1, 18, 0, tzinfo=UTC)
    await factory.run_link(after, server)
    clock.current = datetime(2025, 12, 2, 0, 30, tzinfo=UTC)
    assert (await _stats(factory, email="a@b.c"))["today_count"] == 0
    clock.current = datetime(2025, 12, 1, 23, 59, tzinfo=UTC)
    assert (await _stats(factory, email="a@b.c"))["today_count"] == 2
