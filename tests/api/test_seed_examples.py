"""Every curl example of the seed document, sent as written (paths, query strings, bodies),
answers with the documented shape."""

from __future__ import annotations

from typing import Any

from tests.factories import Factory

BASE = "/api/v1/worker"


async def _setup(factory: Factory) -> dict[str, Any]:
    server = await factory.server(max_threads=5)
    request = await factory.request(status="running")
    links = await factory.links(request, 3, email="user@gmail.com")
    site = await factory.client.post(
        "/api/v1/admin/sites", json={"name": "example.com", "type": "entity"}, headers=factory.admin
    )
    group = "2b1c4c64-52c6-4b9c-9a43-1b1d3c1e7a10"
    await factory.client.post(
        "/api/v1/admin/accounts",
        json={"group_id": group, "email": "user@gmail.com", "password": "pass"},
        headers=factory.admin,
    )
    return {
        "server": server,
        "request": request,
        "links": links,
        "site": site.json()["data"],
        "group": group,
    }


SERVER_FIELDS = {"id", "name", "ip", "service", "status", "active_threads", "active_tasks",
                 "max_threads", "priority", "last_health_check", "last_active"}  # fmt: skip
REQUEST_FIELDS = {"id", "user_id", "service_type", "group_id", "name", "website", "auction_price",
                  "target", "created_links", "status", "type_request", "priority", "config", "data",
                  "folder_urls", "started_at", "created_at"}  # fmt: skip


async def _servers_and_requests(factory: Factory, w: dict[str, Any]) -> None:
    """The examples of the servers and requests sections."""
    get, put = factory.client.get, factory.client.put
    h = factory.worker

    r = await get(f"{BASE}/servers?status=online&inactive_minutes=5", headers=h)
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and body["total"] == len(body["data"])
    assert set(body["data"][0]) >= SERVER_FIELDS

    r = await get(f"{BASE}/servers/available?status=online&service=tool", headers=h)
    (item,) = r.json()["data"]
    assert item["avail_slots"] == item["max_threads"] - item["active_tasks"] == 5

    r = await put(
        f"{BASE}/servers/{w['server']['id']}/status", json={"status": "offline"}, headers=h
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "offline"
    await put(f"{BASE}/servers/{w['server']['id']}/status", json={"status": "online"}, headers=h)

    r = await get(f"{BASE}/requests?status=pending,running&service_type=entity&limit=50", headers=h)
    assert r.status_code == 200 and set(r.json()["data"][0]) >= REQUEST_FIELDS

    r = await get(f"{BASE}/requests/completable?status=running&all_links_done=true", headers=h)
    assert r.status_code == 200 and r.json() == {"success": True, "data": [], "total": 0}

    r = await get(f"{BASE}/requests/{w['request']['id']}/links/count", headers=h)
    assert r.json() == {
        "success": True,
        "request_id": w["request"]["id"],
        "counts": [{"status": "pending", "count": 3}],
        "total": 3,
        "profile_count": 0,
        "post_count": 0,
    }

    r = await put(
        f"{BASE}/requests/{w['request']['id']}/status", json={"status": "running"}, headers=h
    )
    assert r.status_code == 200 and r.json()["data"]["started_at"] is not None


async def _links(factory: Factory, w: dict[str, Any]) -> None:
    """The examples of the links section."""
    get, put, post = factory.client.get, factory.client.put, factory.client.post
    h = factory.worker

    r = await get(f"{BASE}/links?status=pending&service_type=entity&limit=100", headers=h)
    assert r.json()["total"] == 3
    r = await get(f"{BASE}/links?stale=true&timeout_minutes=15", headers=h)
    assert r.json() == {"success": True, "data": [], "total": 0}

    link_id = w["links"][0]["id"]
    r = await put(
        f"{BASE}/links/{link_id}/assign", json={"server_id": w["server"]["id"]}, headers=h
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "queued"

    new_link = {
        "request_id": w["request"]["id"], "service_type": "entity", "server_id": w["server"]["id"],
        "site_id": w["site"]["id"], "site_name": "example.com", "email": "user@gmail.com",
        "username": "user123", "password": "pass", "about": "Bio", "max_retries": 3,
        "details": {"key": "value"},
    }  # fmt: skip
    r = await post(f"{BASE}/links/bulk", json={"links": [new_link]}, headers=h)
    assert r.json() == {"success": True, "created": 1}

    r = await get(f"{BASE}/links/retryable?service_type=entity&limit=200", headers=h)
    assert r.json() == {"success": True, "data": [], "total": 0}

    claimed = await factory.claim(w["server"])
    await factory.result(claimed[0]["id"], w["server"], status="failed", error="captcha")
    r = await put(f"{BASE}/links/{claimed[0]['id']}/retry", headers=h)
    assert r.status_code == 200 and r.json()["data"]["retry_count"] == 1

    r = await put(
        f"{BASE}/links/bulk-retry", json={"link_ids": [link_id, w["links"][1]["id"]]}, headers=h
    )
    assert r.json() == {"success": True, "updated": 0}

    r = await put(
        f"{BASE}/links/mark-final-failed", json={"request_id": w["request"]["id"]}, headers=h
    )
    assert r.json() == {"success": True, "updated": 0}

    r = await get(
        f"{BASE}/links/account-stats?email=user@gmail.com&request_id={w['request']['id']}",
        headers=h,
    )
    stats = r.json()
    assert set(stats) == {"success", "email", "pending_count", "today_count", "total_completed",
                          "last_post_at", "request_pending", "request_completed"}  # fmt: skip
    assert stats["email"] == "user@gmail.com" and stats["pending_count"] == 4


async def _sites_accounts_settings_and_closing(factory: Factory, w: dict[str, Any]) -> None:
    """Sites, accounts, settings, then connect and complete."""
    get, put = factory.client.get, factory.client.put
    h = factory.worker

    r = await get(f"{BASE}/sites?type=entity&active=true&limit=100", headers=h)
    assert [s["name"] for s in r.json()["data"]] == ["example.com"]
    r = await get(f"{BASE}/sites?ids={w['site']['id']},{w['site']['id']}", headers=h)
    assert r.json()["total"] == 1

    r = await get(f"{BASE}/accounts?group_id={w['group']}&status=active", headers=h)
    assert r.json()["data"][0]["password"] == "pass"

    r = await get(f"{BASE}/settings?group=rate_limit", headers=h)
    assert r.json() == {
        "success": True,
        "group": "rate_limit",
        "settings": {"max_posts_per_day": "50", "cooldown_minutes": "5"},
    }

    r = await put(f"{BASE}/requests/{w['request']['id']}/connect", headers=h)
    assert set(r.json()) == {"success", "updated", "links_connect", "links_canceled"}
    r = await put(f"{BASE}/requests/{w['request']['id']}/complete", headers=h)
    assert r.json() == {"success": True, "updated": True}


async def test_every_seed_example(factory: Factory) -> None:
    w = await _setup(factory)
    await _servers_and_requests(factory, w)
    await _links(factory, w)
    await _sites_accounts_settings_and_closing(factory, w)
