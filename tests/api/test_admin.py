"""Admin API: servers (and their keys), requests, sites, accounts, settings."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from assign.db.tables import servers
from assign.services.context import Context
from assign.services.keys import KeyCache
from tests.factories import ADMIN, TOOL, WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent


async def _call(factory: Factory, method: str, path: str, json: Any = None, **params: Any) -> Any:
    return await factory.client.request(
        method, f"{ADMIN}{path}", json=json, params=params or None, headers=factory.admin
    )


# --- servers ---------------------------------------------------------------------------------


async def test_create_server_shows_key_once(factory: Factory, ctx: Context) -> None:
    response = await _call(factory, "POST", "/servers", {"name": "tool-a", "service": "tool"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    server = body["data"]
    assert server["api_key"].startswith("asg_") and len(server["api_key"]) > 40
    assert (server["max_threads"], server["priority"], server["status"]) == (10, 0, "online")
    assert (server["service_types"], server["active_tasks"], server["avail_slots"]) == ([], 0, 10)
    assert server["ip"] is None and server["last_health_check"] is None

    # the key works on the tool API and is never shown again
    heartbeat = await factory.client.post(f"{TOOL}/heartbeat", headers=factory.tool(server))
    assert heartbeat.status_code == 200
    for response in (
        await _call(factory, "GET", "/servers"),
        await _call(factory, "GET", f"/servers/{server['id']}"),
        await factory.client.get(f"{WORKER}/servers", headers=factory.worker),
    ):
        assert response.status_code == 200
        assert server["api_key"] not in response.text
        assert "api_key" not in response.text
    got = (await _call(factory, "GET", f"/servers/{server['id']}")).json()["data"]
    assert got == {
        **{k: v for k, v in server.items() if k not in ("api_key", "last_health_check")},
        "last_health_check": got["last_health_check"],
        "updated_at": got["updated_at"],
    }


async def test_create_server_all_fields_and_validation(factory: Factory) -> None:
    body = {
        "name": "tool-b",
        "ip": "10.1.1.1",
        "service": "tool",
        "max_threads": 4,
        "priority": 9,
        "status": "maintenance",
        "service_types": ["social", "podcast"],
    }
    response = await _call(factory, "POST", "/servers", body)
    assert response.status_code == 201
    data = response.json()["data"]
    assert {k: data[k] for k in body} == body

    for bad, field in (
        ({"service": "tool"}, "name"),
        ({"name": "x"}, "service"),
        ({"name": "x", "service": "tool", "status": "busy"}, "status"),
        ({"name": "x", "service": "tool", "max_threads": 0}, "max_threads"),
        ({"name": "x", "service": "tool", "service_types": ["video"]}, "service_types[0]"),
    ):
        response = await _call(factory, "POST", "/servers", bad)
        assert response.status_code == 400, bad
        assert field in [d["field"] for d in response.json()["details"]], response.text


async def test_list_servers_filters(factory: Factory) -> None:
    online = await factory.server()
    offline = await factory.server(status="offline")
    response = await _call(factory, "GET", "/servers", status="offline")
    assert [s["id"] for s in response.json()["data"]] == [offline["id"]]
    response = await _call(factory, "GET", "/servers", service="tool")
    assert {s["id"] for s in response.json()["data"]} == {online["id"], offline["id"]}
    response = await _call(factory, "GET", "/servers")
    assert response.json()["total"] == 3  # with the assign server


async def test_patch_server(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=3)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200

    changes = {"name": "renamed", "ip": "1.2.3.4", "max_threads": 8, "priority": 4}
    response = await _call(factory, "PATCH", f"/servers/{server['id']}", changes)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert {k: data[k] for k in changes} == changes
    assert (data["active_tasks"], data["avail_slots"]) == (1, 7)

    response = await _call(
        factory, "PATCH", f"/servers/{server['id']}", {"service_types": ["social"], "ip": None}
    )
    data = response.json()["data"]
    assert (data["service_types"], data["ip"], data["name"]) == (["social"], None, "renamed")

    # a status change through PATCH releases queued links like PUT /status does
    response = await _call(factory, "PATCH", f"/servers/{server['id']}", {"status": "offline"})
    assert response.json()["data"]["status"] == "offline"
    assert response.json()["data"]["active_tasks"] == 0
    assert [lk["id"] for lk in await factory.list_links()] == [link["id"]]
    await assert_active_tasks_consistent(ctx)

    response = await _call(factory, "PATCH", f"/servers/{new_id()}", {"name": "x"})
    assert response.status_code == 404
    response = await _call(factory, "PATCH", f"/servers/{server['id']}", {"max_threads": -1})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "max_threads"


async def test_delete_server(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200

    response = await _call(factory, "DELETE", f"/servers/{server['id']}")
    assert response.status_code == 409
    assert response.json()["success"] is False
    await factory.claim(server)
    assert (await _call(factory, "DELETE", f"/servers/{server['id']}")).status_code == 409
    assert (await factory.result(link["id"], server)).status_code == 200

    response = await _call(factory, "DELETE", f"/servers/{server['id']}")
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": True}
    assert (await _call(factory, "GET", f"/servers/{server['id']}")).status_code == 404
    assert (await _call(factory, "DELETE", f"/servers/{server['id']}")).status_code == 404
    # its key is gone with it
    heartbeat = await factory.client.post(f"{TOOL}/heartbeat", headers=factory.tool(server))
    assert heartbeat.status_code == 401
    # the completed link stays, without a server
    counts = await factory.client.get(
        f"{WORKER}/requests/{request['id']}/links/count", headers=factory.worker
    )
    assert counts.json()["counts"] == [{"status": "completed", "count": 1}]


async def test_delete_server_cancels_its_connect_links(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request(status="running")
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p")
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.json()["links_connect"] == 1
    assert (await _call(factory, "DELETE", f"/servers/{server['id']}")).status_code == 200
    [after] = await factory.list_links(request_id=request["id"], status="canceled")
    assert (after["id"], after["error"], after["server_id"]) == (link["id"], "server deleted", None)


# --- requests --------------------------------------------------------------------------------


async def test_requests_crud(factory: Factory) -> None:
    response = await _call(factory, "POST", "/requests", {"service_type": "podcast", "name": "P"})
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert (created["status"], created["type_request"], created["priority"]) == (
        "pending",
        "normal",
        0,
    )
    assert (created["created_links"], created["started_at"], created["completed_at"]) == (
        0,
        None,
        None,
    )
    running = (
        await _call(
            factory,
            "POST",
            "/requests",
            {"service_type": "entity", "name": "R", "status": "running"},
        )
    ).json()["data"]
    assert running["started_at"] is not None

    response = await _call(factory, "GET", f"/requests/{created['id']}")
    assert response.json() == {"success": True, "data": created}
    response = await _call(factory, "GET", "/requests")
    assert {r["id"] for r in response.json()["data"]} == {created["id"], running["id"]}
    response = await _call(factory, "GET", "/requests", status="running")
    assert [r["id"] for r in response.json()["data"]] == [running["id"]]
    response = await _call(factory, "GET", "/requests", service_type="podcast")
    assert [r["id"] for r in response.json()["data"]] == [created["id"]]

    response = await _call(
        factory,
        "PATCH",
        f"/requests/{created['id']}",
        {"name": "P2", "priority": 7, "config": {"connect": True}, "status": "completed"},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["name"], data["priority"], data["config"], data["status"]) == (
        "P2",
        7,
        {"connect": True},
        "completed",
    )
    assert data["completed_at"] is not None

    assert (await _call(factory, "GET", f"/requests/{new_id()}")).status_code == 404
    assert (
        await _call(factory, "PATCH", f"/requests/{new_id()}", {"name": "x"})
    ).status_code == 404
    response = await _call(factory, "POST", "/requests", {"service_type": "video", "name": "x"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "service_type"
    response = await _call(factory, "POST", "/requests", {"service_type": "entity"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "name"


async def test_request_priority_reorders_its_links(factory: Factory) -> None:
    a = await factory.request(priority=1)
    b = await factory.request(priority=2)
    (link_a,) = await factory.links(a, 1)
    (link_b,) = await factory.links(b, 1)
    assert [lk["id"] for lk in await factory.list_links()] == [link_b["id"], link_a["id"]]
    await _call(factory, "PATCH", f"/requests/{a['id']}", {"priority": 5})
    assert [lk["id"] for lk in await factory.list_links()] == [link_a["id"], link_b["id"]]


# --- sites and accounts ----------------------------------------------------------------------


async def test_sites_crud(factory: Factory) -> None:
    response = await _call(factory, "POST", "/sites", {"name": "s.com", "type": "blog20"})
    assert response.status_code == 201
    site = response.json()["data"]
    assert (site["active"], site["config"]) == (True, None)
    response = await _call(factory, "PATCH", f"/sites/{site['id']}", {"active": False})
    assert response.json()["data"]["active"] is False
    response = await _call(factory, "GET", "/sites", active="false")
    assert [s["id"] for s in response.json()["data"]] == [site["id"]]
    response = await _call(factory, "DELETE", f"/sites/{site['id']}")
    assert response.json() == {"success": True, "updated": True}
    assert (await _call(factory, "DELETE", f"/sites/{site['id']}")).status_code == 404
    assert (await _call(factory, "PATCH", f"/sites/{site['id']}", {"name": "x"})).status_code == 404
    assert (await _call(factory, "GET", "/sites")).json()["data"] == []
    response = await _call(factory, "POST", "/sites", {"name": "s.com", "type": "nope"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "type"


async def test_accounts_crud_never_show_password(factory: Factory) -> None:
    group = new_id()
    body = {"group_id": group, "email": "a@x.com", "username": "a", "password": "hunter2-pw"}
    response = await _call(factory, "POST", "/accounts", body)
    assert response.status_code == 201
    account = response.json()["data"]
    assert account["status"] == "active"
    assert "hunter2-pw" not in response.text and "password" not in account

    response = await _call(factory, "GET", "/accounts", group_id=group)
    assert response.json() == {"success": True, "data": [account], "total": 1}
    assert "hunter2-pw" not in response.text

    response = await _call(
        factory, "PATCH", f"/accounts/{account['id']}", {"password": "new-pw", "status": "banned"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "banned"
    assert "new-pw" not in response.text
    worker = await factory.client.get(
        f"{WORKER}/accounts", params={"group_id": group}, headers=factory.worker
    )
    assert worker.json()["data"][0]["password"] == "new-pw"

    assert (await _call(factory, "DELETE", f"/accounts/{account['id']}")).status_code == 200
    assert (await _call(factory, "DELETE", f"/accounts/{account['id']}")).status_code == 404
    response = await _call(factory, "POST", "/accounts", {"email": "b@x.com"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "group_id"


# --- settings --------------------------------------------------------------------------------


async def test_settings_put_merges(factory: Factory) -> None:
    response = await _call(
        factory, "PUT", "/settings/rate_limit", {"settings": {"max_posts_per_day": 20, "x": True}}
    )
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "group": "rate_limit",
        "settings": {"cooldown_minutes": "5", "max_posts_per_day": "20", "x": "true"},
    }
    response = await _call(factory, "PUT", "/settings/new_group", {"settings": {"a": "1"}})
    assert response.json() == {"success": True, "group": "new_group", "settings": {"a": "1"}}

    response = await _call(factory, "GET", "/settings/rate_limit")
    assert response.json()["settings"]["max_posts_per_day"] == "20"
    response = await _call(factory, "GET", "/settings")
    assert response.json() == {
        "success": True,
        "data": {
            "new_group": {"a": "1"},
            "rate_limit": {"cooldown_minutes": "5", "max_posts_per_day": "20", "x": "true"},
        },
    }
    worker = await factory.client.get(
        f"{WORKER}/settings", params={"group": "new_group"}, headers=factory.worker
    )
    assert worker.json() == {"success": True, "group": "new_group", "settings": {"a": "1"}}

    response = await _call(factory, "PUT", "/settings/rate_limit", {"settings": ["a"]})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "settings"
    response = await _call(factory, "PUT", "/settings/rate_limit", {})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "settings"


async def test_stats(factory: Factory) -> None:
    server = await factory.server(max_threads=4)
    request = await factory.request()
    links = await factory.links(request, 2)
    assert (await factory.assign(links[0]["id"], server)).status_code == 200
    response = await _call(factory, "GET", "/stats")
    assert response.status_code == 200
    body = response.json()
    assert body["links"] == {"pending": 1, "queued": 1}
    assert body["requests"] == {"pending": 1}
    assert body["servers"] == {"online": 1, "active_tasks": 1, "max_threads": 4}


async def test_a_key_removed_by_another_process_stops_working_when_its_entry_expires(
    factory: Factory, ctx: Context
) -> None:
    now = [0.0]
    ctx.known_keys = KeyCache(5, timer=lambda: now[0])
    server = await factory.server()
    heartbeat = f"{TOOL}/heartbeat"
    assert (await factory.client.post(heartbeat, headers=factory.tool(server))).status_code == 200
    # another API process deletes the server: this one still trusts the key it found ...
    async with ctx.db.transaction() as conn:
        await conn.execute(sa.delete(servers).where(servers.c.id == uuid.UUID(server["id"])))
    response = await factory.client.post(heartbeat, headers=factory.tool(server))
    assert response.status_code == 404  # the key is known, the server is gone
    # ... until the entry expires
    now[0] += 5.1
    assert (await factory.client.post(heartbeat, headers=factory.tool(server))).status_code == 401
