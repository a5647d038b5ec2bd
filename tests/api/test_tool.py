"""Tool API: heartbeat, claim, one link, result."""

from __future__ import annotations

from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.services.context import Context
from tests.factories import TOOL, WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent


def _stamp(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")  # type: ignore[no-any-return]


async def _heartbeat(factory: Factory, server: dict[str, Any], body: Any = None) -> Any:
    return await factory.client.post(f"{TOOL}/heartbeat", json=body, headers=factory.tool(server))


async def _claim_raw(factory: Factory, server: dict[str, Any], body: Any) -> Any:
    return await factory.client.post(f"{TOOL}/links/claim", json=body, headers=factory.tool(server))


async def _connect(factory: Factory, request: dict[str, Any]) -> dict[str, Any]:
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- heartbeat -------------------------------------------------------------------------------


async def test_heartbeat_records_time_and_threads(factory: Factory, clock: FrozenClock) -> None:
    server = await factory.server()
    now = clock.advance(minutes=3)
    response = await _heartbeat(factory, server, {"active_threads": 2})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["id"] == server["id"] and "api_key" not in data
    assert data["status"] == "online"
    assert data["active_threads"] == 2
    assert _stamp(now) == data["last_health_check"][:19]
    assert data["last_active"] is None
    # no body at all is fine; active_threads is then left alone
    response = await _heartbeat(factory, server)
    assert response.status_code == 200
    assert response.json()["data"]["active_threads"] == 2


async def test_heartbeat_brings_offline_server_back(factory: Factory) -> None:
    server = await factory.server(status="offline")
    response = await _heartbeat(factory, server, {})
    assert response.json()["data"]["status"] == "online"
    assert (await factory.get_server(server["id"]))["status"] == "online"


async def test_heartbeat_keeps_maintenance(factory: Factory) -> None:
    server = await factory.server(status="maintenance")
    response = await _heartbeat(factory, server, {})
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "maintenance"
    assert response.json()["data"]["last_health_check"] is not None


async def test_heartbeat_bad_body(factory: Factory) -> None:
    server = await factory.server()
    response = await _heartbeat(factory, server, {"active_threads": -1})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "active_threads"


# --- claim -----------------------------------------------------------------------------------


async def test_claim_queued_first_then_connect_within_free_slots(
    factory: Factory, ctx: Context, clock: FrozenClock
) -> None:
    server = await factory.server(max_threads=3)
    first = await factory.request(status="running")
    for link in await factory.links(first, 2):
        await factory.run_link(link, server, profile_url="https://p")
    assert (await _connect(factory, first))["links_connect"] == 2
    second = await factory.request(priority=3)
    queued = await factory.links(second, 2)
    for link in queued:
        assert (await factory.assign(link["id"], server)).status_code == 200

    now = clock.advance(minutes=1)
    claimed = await factory.claim(server)
    assert [c["status"] for c in claimed] == ["running", "running", "connecting"]
    assert {c["id"] for c in claimed[:2]} == {lk["id"] for lk in queued}
    assert all(c["started_at"][:19] == _stamp(now) for c in claimed)
    assert all(c["password"] == "s3cret-pass" for c in claimed)
    assert claimed[2]["phase"] == "connect"
    got = await factory.get_server(server["id"])
    assert (got["active_tasks"], got["avail_slots"]) == (3, 0)
    assert got["last_active"][:19] == _stamp(now)
    await assert_active_tasks_consistent(ctx)

    assert await factory.claim(server) == []  # no slot for the other connect link
    done = await factory.result(claimed[0]["id"], server)
    assert done.status_code == 200
    again = await factory.claim(server)
    assert [c["status"] for c in again] == ["connecting"]
    assert again[0]["id"] not in {c["id"] for c in claimed}
    assert (await factory.get_server(server["id"]))["active_tasks"] == 3
    await assert_active_tasks_consistent(ctx)


async def test_claim_respects_limit_and_own_links(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=5)
    other = await factory.server(max_threads=5)
    request = await factory.request()
    links = await factory.links(request, 4)
    for link in links[:3]:
        assert (await factory.assign(link["id"], server)).status_code == 200
    assert (await factory.assign(links[3]["id"], other)).status_code == 200

    one = await factory.claim(server, limit=1)
    assert len(one) == 1
    rest = await factory.claim(server, limit=10)
    assert len(rest) == 2
    assert {c["id"] for c in one + rest} == {lk["id"] for lk in links[:3]}
    assert await factory.claim(server) == []
    assert [c["id"] for c in await factory.claim(other)] == [links[3]["id"]]
    await assert_active_tasks_consistent(ctx)


async def test_claim_without_password_and_default_limit(factory: Factory) -> None:
    server = await factory.server(max_threads=20)
    request = await factory.request()
    items = [
        {"request_id": request["id"], "service_type": "entity", "server_id": server["id"]}
        for _ in range(12)
    ]
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )
    assert response.status_code == 200
    response = await factory.client.post(f"{TOOL}/links/claim", headers=factory.tool(server))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["total"] == 10  # default limit
    assert all(c["password"] is None for c in body["data"])


async def test_claim_limit_is_clamped_to_1000(factory: Factory) -> None:
    server = await factory.server(max_threads=2000)
    request = await factory.request()
    item = {"request_id": request["id"], "service_type": "entity", "server_id": server["id"]}
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": [item] * 1001}, headers=factory.worker
    )
    assert response.status_code == 200
    response = await _claim_raw(factory, server, {"limit": 5000})
    assert response.status_code == 200
    assert response.json()["total"] == 1000
    assert len(await factory.claim(server, limit=1000)) == 1


@pytest.mark.parametrize("limit", [0, -5, "many"])
async def test_claim_bad_limit(factory: Factory, limit: Any) -> None:
    server = await factory.server()
    response = await _claim_raw(factory, server, {"limit": limit})
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["details"][0]["field"] == "limit"


# --- GET /links/:id --------------------------------------------------------------------------


async def test_get_own_link_only(factory: Factory) -> None:
    server = await factory.server()
    other = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200

    got = await factory.get_link(link["id"], server)
    assert (got["id"], got["status"], got["server_id"]) == (link["id"], "queued", server["id"])
    assert "password" not in got
    for who, link_id in ((other, link["id"]), (server, new_id())):
        response = await factory.client.get(f"{TOOL}/links/{link_id}", headers=factory.tool(who))
        assert response.status_code == 404
        assert response.json() == {"success": False, "error": "Link not found"}


# --- PUT /links/:id/result -------------------------------------------------------------------


async def test_result_completed_create_phase_counts(
    factory: Factory, ctx: Context, clock: FrozenClock
) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1, details={"a": 1})
    assert (await factory.assign(link["id"], server)).status_code == 200
    await factory.claim(server)
    now = clock.advance(minutes=2)
    response = await factory.result(
        link["id"],
        server,
        profile_url="https://p/1",
        post_url="https://x/1",
        details={"b": 2},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["status"], data["error"]) == ("completed", None)
    assert (data["profile_url"], data["post_url"]) == ("https://p/1", "https://x/1")
    assert data["details"] == {"a": 1, "b": 2}
    assert data["completed_at"][:19] == _stamp(now)
    assert (await factory.get_request(request["id"]))["created_links"] == 1
    got = await factory.get_server(server["id"])
    assert got["active_tasks"] == 0 and got["last_active"][:19] == _stamp(now)
    await assert_active_tasks_consistent(ctx)


async def test_result_completed_connect_phase_does_not_count(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request(status="running")
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p")
    assert (await factory.get_request(request["id"]))["created_links"] == 1
    await _connect(factory, request)
    (claimed,) = await factory.claim(server)
    assert (claimed["id"], claimed["status"]) == (link["id"], "connecting")
    response = await factory.result(link["id"], server, post_url="https://x")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["status"], data["phase"], data["post_url"]) == (
        "completed",
        "connect",
        "https://x",
    )
    assert (await factory.get_request(request["id"]))["created_links"] == 1
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0


async def test_result_failed_sets_error_and_frees_slot(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=1)
    request = await factory.request()
    first, second = await factory.links(request, 2)
    failed = await factory.run_link(first, server, status="failed", error="captcha")
    assert (failed["status"], failed["error"], failed["completed_at"]) == (
        "failed",
        "captcha",
        None,
    )
    assert (failed["retry_count"], failed["server_id"]) == (0, server["id"])
    assert (await factory.get_request(request["id"]))["created_links"] == 0
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    # the freed slot takes the next link; a failure without a message still says why
    failed = await factory.run_link(second, server, status="failed")
    assert failed["error"]
    await assert_active_tasks_consistent(ctx)


async def test_result_not_found_and_conflicts(factory: Factory, ctx: Context) -> None:
    server = await factory.server()
    other = await factory.server()
    request = await factory.request()
    queued, running = await factory.links(request, 2)
    assert (await factory.assign(running["id"], server)).status_code == 200
    await factory.claim(server)
    assert (await factory.assign(queued["id"], server)).status_code == 200

    response = await factory.result(running["id"], other)
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Link not found"}
    response = await factory.result(new_id(), server)
    assert response.status_code == 404

    response = await factory.result(queued["id"], server)
    assert response.status_code == 409
    assert "queued" in response.json()["error"]
    assert (await factory.result(running["id"], server)).status_code == 200
    response = await factory.result(running["id"], server, status="failed")
    assert response.status_code == 409
    assert "completed" in response.json()["error"]
    assert (await factory.get_request(request["id"]))["created_links"] == 1

    response = await factory.result(queued["id"], server, status="done")
    assert response.status_code == 400
    detail = response.json()["details"][0]
    assert detail["field"] == "status"
    assert "completed" in detail["message"] and "failed" in detail["message"]
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    await assert_active_tasks_consistent(ctx)
