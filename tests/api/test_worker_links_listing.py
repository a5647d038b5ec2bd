"""Worker API: GET /links, its filters, order and stale links."""

from __future__ import annotations

from typing import Any

from assign.clock import FrozenClock
from tests.api import worker_calls as calls
from tests.factories import Factory, new_id


async def test_list_links_shape_and_default_pending_without_server(factory: Factory) -> None:
    server = await factory.server()
    site = await factory.site()
    request = await factory.request(priority=4)
    response = await calls.bulk(
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

    response = await calls.get(factory, "/links")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["total"] == 1
    (link,) = body["data"]
    assert set(link) == calls.LINK_KEYS  # no password, no internal columns
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

    queued = (await calls.get(factory, "/links", status="queued")).json()["data"]
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

    assert calls.ids(await factory.list_links()) == [
        old_high["id"],
        new_high["id"],
        old_low["id"],
        new_low["id"],
    ]
    assert calls.ids(await factory.list_links(limit=2)) == [old_high["id"], new_high["id"]]
    assert calls.ids(await factory.list_links(request_id=low["id"])) == [
        old_low["id"],
        new_low["id"],
    ]
    assert calls.ids(await factory.list_links(service_type="social")) == [
        old_high["id"],
        new_high["id"],
    ]

    assert (await factory.assign(new_low["id"], s1)).status_code == 200
    assert calls.ids(await factory.list_links(server_id=s1["id"], status="queued")) == [
        new_low["id"]
    ]
    assert calls.ids(await factory.list_links(server_id=s1["id"])) == []
    both = await factory.list_links(status="pending,queued", request_id=low["id"])
    assert calls.ids(both) == [old_low["id"], new_low["id"]]

    response = await calls.get(factory, "/links", status="waiting")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "status"
    response = await calls.get(factory, "/links", request_id="not-a-uuid")
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
        response = await calls.get(factory, "/links", stale="true", **params)
        assert response.status_code == 200, response.text
        return calls.ids(response.json()["data"])

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
    assert (await calls.put(factory, f"/requests/{request['id']}/connect")).status_code == 200
    assert [c["status"] for c in await factory.claim(server)] == ["connecting"]
    clock.advance(minutes=20)
    response = await calls.get(factory, "/links", stale="true")
    assert [(item["id"], item["status"]) for item in response.json()["data"]] == [
        (link["id"], "connecting")
    ]
