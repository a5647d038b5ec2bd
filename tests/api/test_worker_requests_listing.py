"""Worker API: GET /requests, /requests/completable and /requests/:id/links/count."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.db.repositories import requests as requests_repo
from assign.services.context import Context
from tests.api import worker_calls as calls
from tests.factories import WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent

REQUEST_KEYS = {
    "id", "user_id", "service_type", "group_id", "name", "website", "auction_price", "target",
    "created_links", "status", "type_request", "priority", "config", "data", "folder_urls",
    "started_at", "completed_at", "created_at", "updated_at",
}  # fmt: skip


async def _get(factory: Factory, path: str, **params: Any) -> dict[str, Any]:
    response = await factory.client.get(f"{WORKER}{path}", params=params, headers=factory.worker)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body  # type: ignore[no-any-return]


async def _ids(factory: Factory, path: str, **params: Any) -> list[str]:
    body = await _get(factory, path, **params)
    assert body["total"] == len(body["data"])
    return [item["id"] for item in body["data"]]


# --- GET /requests -----------------------------------------------------------------------------


async def test_list_requests_shape(factory: Factory) -> None:
    user, group = new_id(), new_id()
    request = await factory.request(
        service_type="social",
        name="Campaign A",
        website="https://target.com",
        user_id=user,
        group_id=group,
        auction_price=100,
        target=50,
        priority=5,
        config={"connect": False},
        data={"k": [1, 2]},
        folder_urls={"a": "https://f/a"},
    )
    body = await _get(factory, "/requests")
    assert body["total"] == 1
    item = body["data"][0]
    assert set(item) == REQUEST_KEYS
    assert item == request
    assert item["user_id"] == user and item["group_id"] == group
    assert (item["service_type"], item["status"], item["type_request"]) == (
        "social",
        "pending",
        "normal",
    )
    assert (item["auction_price"], item["target"], item["created_links"]) == (100, 50, 0)
    assert item["config"] == {"connect": False} and item["data"] == {"k": [1, 2]}
    assert item["started_at"] is None and item["completed_at"] is None


async def test_list_requests_default_statuses_and_filters(factory: Factory) -> None:
    pending = await factory.request()
    running = await factory.request(status="running", service_type="blog20", type_request="vip")
    completed = await factory.request(status="completed")
    failed = await factory.request(status="failed")
    await factory.request(status="canceled")
    await factory.request(status="connecting")

    assert set(await _ids(factory, "/requests")) == {pending["id"], running["id"]}
    assert set(await _ids(factory, "/requests", status="completed,failed")) == {
        completed["id"],
        failed["id"],
    }
    assert await _ids(factory, "/requests", service_type="blog20") == [running["id"]]
    assert await _ids(factory, "/requests", type_request="vip") == [running["id"]]
    assert await _ids(factory, "/requests", type_request="normal") == [pending["id"]]
    assert await _ids(factory, "/requests", service_type="podcast") == []


async def test_list_requests_order_priority_then_oldest(
    factory: Factory, clock: FrozenClock
) -> None:
    first = await factory.request(priority=1)
    clock.advance(minutes=1)
    second = await factory.request(priority=1)
    clock.advance(minutes=1)
    urgent = await factory.request(priority=9)
    clock.advance(minutes=1)
    low = await factory.request(priority=-3)
    assert await _ids(factory, "/requests") == [urgent["id"], first["id"], second["id"], low["id"]]


async def test_list_requests_limit(factory: Factory, ctx: Context) -> None:
    now = ctx.clock.now()
    async with ctx.db.transaction() as conn:  # many rows at once, in one transaction
        for i in range(103):
            await requests_repo.insert(
                conn,
                {"id": uuid.uuid4(), "service_type": "entity", "name": f"bulk-{i}",
                 "status": "pending", "type_request": "normal", "priority": 0,
                 "created_links": 0, "created_at": now, "updated_at": now},
            )  # fmt: skip
    assert len(await _ids(factory, "/requests")) == 100
    assert len(await _ids(factory, "/requests", limit=2)) == 2
    assert len(await _ids(factory, "/requests", limit=5000)) == 103  # clamped to 1000, not refused
    for bad in ("0", "-1"):
        response = await factory.client.get(
            f"{WORKER}/requests", params={"limit": bad}, headers=factory.worker
        )
        assert response.status_code == 400
        assert response.json()["details"] == [{"field": "limit", "message": "must be at least 1"}]
    response = await factory.client.get(
        f"{WORKER}/requests", params={"limit": "ten"}, headers=factory.worker
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "limit"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "pending,done"}, "status"), ({"service_type": "video"}, "service_type")],
)
async def test_list_requests_bad_filters(
    factory: Factory, params: dict[str, str], field: str
) -> None:
    response = await factory.client.get(f"{WORKER}/requests", params=params, headers=factory.worker)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["details"][0]["field"] == field
    assert "allowed:" in body["details"][0]["message"]


# --- GET /requests/completable ----------------------------------------------------------------


async def test_completable_default_and_no_active_links(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=10)

    async def running_request(**values: Any) -> dict[str, Any]:
        return await factory.request(status="running", **values)

    no_links = await running_request()
    all_done = await running_request()
    for link in await factory.links(all_done, 2):
        await factory.run_link(link, server, profile_url="https://p")
    has_pending = await running_request()
    done, _ = await factory.links(has_pending, 2)
    await factory.run_link(done, server)
    retry_left = await running_request()
    (link,) = await factory.links(retry_left, 1)
    await factory.run_link(link, server, status="failed", error="boom")
    exhausted = await running_request(service_type="social")
    (link,) = await factory.links(exhausted, 1, max_retries=0)
    await factory.run_link(link, server, status="failed", error="boom")
    in_connect = await running_request()
    (link,) = await factory.links(in_connect, 1)
    await factory.run_link(link, server, profile_url="https://p/c")
    assert (await calls.put(factory, f"/requests/{in_connect['id']}/connect")).status_code == 200
    assert (
        await calls.put(factory, f"/requests/{in_connect['id']}/status", {"status": "running"})
    ).status_code == 200
    queued = await running_request()
    (link,) = await factory.links(queued, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200
    pending_request = await factory.request()
    for link in await factory.links(pending_request, 1):
        await factory.run_link(link, server)

    default = {all_done["id"], exhausted["id"]}
    assert set(await _ids(factory, "/requests/completable")) == default
    assert set(await _ids(factory, "/requests/completable", all_links_done="true")) == default
    assert set(await _ids(factory, "/requests/completable", all_links_completed="true")) == default
    relaxed = {all_done["id"], exhausted["id"], retry_left["id"], in_connect["id"]}
    assert set(await _ids(factory, "/requests/completable", no_active_links="true")) == relaxed
    assert no_links["id"] not in relaxed and has_pending["id"] not in relaxed
    assert queued["id"] not in relaxed

    assert await _ids(factory, "/requests/completable", status="pending") == [pending_request["id"]]
    assert await _ids(factory, "/requests/completable", type="social") == [exhausted["id"]]
    response = await factory.client.get(
        f"{WORKER}/requests/completable", params={"type": "video"}, headers=factory.worker
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "type"
    await assert_active_tasks_consistent(ctx)


# --- GET /requests/:id/links/count ------------------------------------------------------------


async def test_links_count_exact_shape(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request()
    links = await factory.links(request, 6)
    await factory.run_link(links[0], server, profile_url="https://p/0", post_url="https://x/0")
    await factory.run_link(links[1], server, profile_url="https://p/1")
    await factory.run_link(links[2], server, status="failed", post_url="https://x/2")
    assert (await factory.assign(links[3]["id"], server)).status_code == 200
    other = await factory.request()
    await factory.links(other, 2)

    body = await _get(factory, f"/requests/{request['id']}/links/count")
    assert body == {
        "success": True,
        "request_id": request["id"],
        "counts": [
            {"status": "completed", "count": 2},
            {"status": "failed", "count": 1},
            {"status": "pending", "count": 2},
            {"status": "queued", "count": 1},
        ],
        "total": 6,
        "profile_count": 2,
        "post_count": 1,  # a failed result's post_url is not kept on the link (PRODUCT §9)
    }
    await assert_active_tasks_consistent(ctx)


async def test_links_count_empty_and_unknown(factory: Factory) -> None:
    request = await factory.request()
    body = await _get(factory, f"/requests/{request['id']}/links/count")
    assert body == {
        "success": True,
        "request_id": request["id"],
        "counts": [],
        "total": 0,
        "profile_count": 0,
        "post_count": 0,
    }
    response = await factory.client.get(
        f"{WORKER}/requests/{new_id()}/links/count", headers=factory.worker
    )
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Request not found"}
