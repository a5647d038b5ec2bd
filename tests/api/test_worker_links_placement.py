"""Worker API: placing links: PUT /links/:id/assign and POST /links/bulk."""

from __future__ import annotations

from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.services.context import Context
from tests.api import worker_calls as calls
from tests.factories import WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent

# --- PUT /links/:id/assign -------------------------------------------------------------------


async def test_assign_pending_link(factory: Factory, ctx: Context, clock: FrozenClock) -> None:
    server = await factory.server(max_threads=2)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    now = clock.advance(minutes=1)
    response = await factory.assign(link["id"], server)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == calls.LINK_KEYS
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

    response = await calls.put(factory, f"/links/{link['id']}/assign", {})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "server_id"
    response = await calls.put(factory, f"/links/{link['id']}/assign", {"server_id": "nope"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "server_id"
    response = await calls.put(factory, "/links/nope/assign", {"server_id": server["id"]})
    assert response.status_code in (400, 404)
    assert (await factory.list_links())[0]["status"] == "pending"


# --- POST /links/bulk ------------------------------------------------------------------------


async def test_bulk_is_all_or_nothing(factory: Factory) -> None:
    request = await factory.request()
    good = {"request_id": request["id"], "service_type": "entity"}
    missing = new_id()
    response = await calls.bulk(
        factory, [good, {"request_id": missing, "service_type": "entity"}, good]
    )
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
    response = await calls.bulk(factory, [good, bad])
    assert response.status_code == 400, response.text
    assert field in {d["field"] for d in response.json()["details"]}
    assert await factory.list_links() == []


async def test_bulk_size_limits(factory: Factory) -> None:
    request = await factory.request()
    item = {"request_id": request["id"], "service_type": "entity"}
    response = await calls.bulk(factory, [])
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "links"
    response = await calls.bulk(factory, [item] * 5001)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "links"
    response = await factory.client.post(f"{WORKER}/links/bulk", json={}, headers=factory.worker)
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "links"
    assert await factory.list_links() == []

    response = await calls.bulk(factory, [item] * 5000)
    assert response.status_code == 200
    assert response.json() == {"success": True, "created": 5000}
    counts = (await calls.get(factory, f"/requests/{request['id']}/links/count")).json()
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
    response = await calls.bulk(factory, items)
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
        response = await calls.bulk(factory, items)
        assert response.status_code == 400
        assert [d["field"] for d in response.json()["details"]] == ["links[1].server_id"]
    assert await factory.list_links() == []
