"""Worker API: GET /servers, GET /servers/available, PUT /servers/:id/status."""

from __future__ import annotations

from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.services.context import Context
from tests.factories import TOOL, WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent

SERVER_KEYS = {
    "id", "name", "ip", "service", "status", "active_threads", "active_tasks", "max_threads",
    "priority", "service_types", "avail_slots", "last_health_check", "last_active",
    "created_at", "updated_at",
}  # fmt: skip


async def _servers(factory: Factory, **params: Any) -> list[dict[str, Any]]:
    response = await factory.client.get(f"{WORKER}/servers", params=params, headers=factory.worker)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["total"] == len(body["data"])
    return body["data"]  # type: ignore[no-any-return]


async def _heartbeat(factory: Factory, server: dict[str, Any]) -> None:
    response = await factory.client.post(f"{TOOL}/heartbeat", json={}, headers=factory.tool(server))
    assert response.status_code == 200, response.text


async def test_list_servers_shape_and_no_key(factory: Factory) -> None:
    server = await factory.server(ip="10.0.0.1", priority=7)
    items = await _servers(factory)
    by_id = {s["id"]: s for s in items}
    assert set(by_id) == {server["id"], factory.assign_server_id}
    got = by_id[server["id"]]
    assert set(got) == SERVER_KEYS
    assert got["ip"] == "10.0.0.1"
    assert got["service"] == "tool"
    assert got["status"] == "online"
    assert (got["active_tasks"], got["max_threads"], got["priority"]) == (0, 3, 7)
    assert got["last_health_check"] is None
    assert got["created_at"].endswith("Z")
    # highest priority first
    assert items[0]["id"] == server["id"]


async def test_list_servers_status_filter_comma_separated(factory: Factory) -> None:
    online = await factory.server()
    offline = await factory.server(status="offline")
    maintenance = await factory.server(status="maintenance")
    ids = {s["id"] for s in await _servers(factory, status="offline")}
    assert ids == {offline["id"]}
    ids = {s["id"] for s in await _servers(factory, status="offline,maintenance")}
    assert ids == {offline["id"], maintenance["id"]}
    ids = {s["id"] for s in await _servers(factory, status="online")}
    assert ids == {online["id"], factory.assign_server_id}


async def test_list_servers_unknown_status_is_400(factory: Factory) -> None:
    response = await factory.client.get(
        f"{WORKER}/servers", params={"status": "online,busy"}, headers=factory.worker
    )
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["details"][0]["field"] == "status"
    assert "online, offline, maintenance" in body["details"][0]["message"]


async def test_inactive_minutes_includes_never_heartbeated(
    factory: Factory, clock: FrozenClock
) -> None:
    old = await factory.server()
    fresh = await factory.server()
    never = await factory.server()
    await _heartbeat(factory, old)
    clock.advance(minutes=10)
    await _heartbeat(factory, fresh)
    ids = {s["id"] for s in await _servers(factory, inactive_minutes=5)}
    # the assign server never heartbeats either
    assert ids == {old["id"], never["id"], factory.assign_server_id}
    ids = {s["id"] for s in await _servers(factory, inactive_minutes=11)}
    assert ids == {never["id"], factory.assign_server_id}
    ids = {s["id"] for s in await _servers(factory, inactive_minutes=5, status="online")}
    assert fresh["id"] not in ids


async def _available(factory: Factory, **params: Any) -> list[dict[str, Any]]:
    response = await factory.client.get(
        f"{WORKER}/servers/available", params=params, headers=factory.worker
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def test_available_slots_and_order(factory: Factory, ctx: Context) -> None:
    low = await factory.server(priority=1, max_threads=5)
    high_small = await factory.server(priority=9, max_threads=2)
    high_big = await factory.server(priority=9, max_threads=5)
    full = await factory.server(priority=20, max_threads=1)
    await factory.server(status="offline", max_threads=8)
    request = await factory.request()
    links = await factory.links(request, 3)
    assert (await factory.assign(links[0]["id"], full)).status_code == 200
    assert (await factory.assign(links[1]["id"], high_big)).status_code == 200
    assert (await factory.assign(links[2]["id"], high_big)).status_code == 200

    items = await _available(factory)
    # priority first, then most free slots; full and offline servers left out
    assert [(s["id"], s["avail_slots"]) for s in items] == [
        (high_big["id"], 3),
        (high_small["id"], 2),
        (low["id"], 5),
    ]
    assert all(s["avail_slots"] == s["max_threads"] - s["active_tasks"] for s in items)
    await assert_active_tasks_consistent(ctx)


async def test_available_prefers_more_free_slots_at_equal_priority(factory: Factory) -> None:
    small = await factory.server(priority=3, max_threads=2)
    big = await factory.server(priority=3, max_threads=6)
    top = await factory.server(priority=4, max_threads=1)
    items = await _available(factory, service="tool")
    assert [s["id"] for s in items] == [top["id"], big["id"], small["id"]]
    assert [s["avail_slots"] for s in items] == [1, 6, 2]


async def test_available_status_and_service_filters(factory: Factory) -> None:
    await factory.server()
    maint = await factory.server(status="maintenance")
    items = await _available(factory, status="maintenance")
    assert [s["id"] for s in items] == [maint["id"]]
    # an assign server takes no links: listed only when asked for by service
    assert factory.assign_server_id not in {s["id"] for s in await _available(factory)}
    assigns = await _available(factory, service="assign")
    assert [s["id"] for s in assigns] == [factory.assign_server_id]
    assert await _available(factory, service="nothing-like-this") == []


@pytest.mark.parametrize("status", ["offline", "maintenance"])
async def test_status_change_releases_queued_links(
    factory: Factory, ctx: Context, status: str
) -> None:
    server = await factory.server(max_threads=3)
    request = await factory.request()
    links = await factory.links(request, 3)
    for link in links:
        assert (await factory.assign(link["id"], server)).status_code == 200
    claimed = await factory.claim(server, limit=1)
    assert len(claimed) == 1

    response = await factory.client.put(
        f"{WORKER}/servers/{server['id']}/status", json={"status": status}, headers=factory.worker
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == status
    assert data["active_tasks"] == 1  # the running one keeps its slot
    assert data["avail_slots"] == 2

    pending = await factory.list_links(request_id=request["id"])
    assert {link["id"] for link in pending} == {lk["id"] for lk in links} - {claimed[0]["id"]}
    assert all(link["server_id"] is None for link in pending)
    running = await factory.list_links(request_id=request["id"], status="running")
    assert [link["id"] for link in running] == [claimed[0]["id"]]
    assert (await factory.get_server(server["id"]))["status"] == status
    await assert_active_tasks_consistent(ctx)


async def test_status_back_online_and_errors(factory: Factory) -> None:
    server = await factory.server(status="maintenance")
    url = f"{WORKER}/servers/{server['id']}/status"
    response = await factory.client.put(url, json={"status": "online"}, headers=factory.worker)
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "online"

    response = await factory.client.put(url, json={"status": "sleeping"}, headers=factory.worker)
    assert response.status_code == 400
    body = response.json()
    assert body["details"][0]["field"] == "status"
    assert "online" in body["details"][0]["message"]

    response = await factory.client.put(url, json={}, headers=factory.worker)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "status"

    response = await factory.client.put(
        f"{WORKER}/servers/{new_id()}/status", json={"status": "offline"}, headers=factory.worker
    )
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Server not found"}
