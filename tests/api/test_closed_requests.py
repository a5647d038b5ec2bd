"""PRODUCT §9 "A closed request gets no new work", on both databases."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.db.repositories import requests as requests_repo
from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.factories import ADMIN, TOOL, WORKER, Factory
from tests.invariants import assert_active_tasks_consistent

CLOSED = ("completed", "failed", "canceled")


async def beat(factory: Factory, *servers: dict[str, Any]) -> None:
    for server in servers:
        response = await factory.client.post(
            f"{TOOL}/heartbeat", json={}, headers=factory.tool(server)
        )
        assert response.status_code == 200, response.text


async def by_status(factory: Factory, request: dict[str, Any]) -> dict[str, int]:
    response = await factory.client.get(
        f"{WORKER}/requests/{request['id']}/links/count", headers=factory.worker
    )
    return {c["status"]: c["count"] for c in response.json()["counts"]}


async def close(factory: Factory, request: dict[str, Any], how: str) -> None:
    """Close the request: ``complete`` (PUT /complete), ``patch-X`` (admin PATCH) or an
    override with PUT /status."""
    if how == "complete":
        url, body, method = f"{WORKER}/requests/{request['id']}/complete", None, "PUT"
        headers = factory.worker
    elif how.startswith("patch-"):
        url, body, method = f"{ADMIN}/requests/{request['id']}", {"status": how[6:]}, "PATCH"
        headers = factory.admin
    else:
        url, body, method = f"{WORKER}/requests/{request['id']}/status", {"status": how}, "PUT"
        headers = factory.worker
    response = await factory.client.request(method, url, json=body, headers=headers)
    assert response.status_code == 200, response.text


async def failed_link(factory: Factory, request: dict[str, Any], server: dict[str, Any]) -> Any:
    """A link of ``request`` that failed with retries left."""
    [link] = await factory.links(request, 1, max_retries=3)
    done = await factory.run_link(link, server, status="failed", error="down")
    assert (done["status"], done["retry_count"]) == ("failed", 0)
    return done


@pytest.mark.parametrize("how", ["complete", *CLOSED, "patch-canceled"])
async def test_closing_cancels_pending_queued_and_connect_links_at_once(
    ctx: Context, factory: Factory, how: str
) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request(status="running")
    [profiled] = await factory.links(request, 1)
    await factory.run_link(profiled, server, profile_url="https://p.test/1")
    connect = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert connect.json()["links_connect"] == 1
    await factory.client.put(
        f"{WORKER}/requests/{request['id']}/status", json={"status": "running"},
        headers=factory.worker,
    )  # fmt: skip
    [running] = await factory.links(request, 1)
    assert (await factory.assign(running["id"], server)).status_code == 200
    assert len(await factory.claim(server, limit=1)) == 1  # running; the connect link waits
    await factory.links(request, 2)  # pending
    await factory.links(request, 2, server_id=server["id"])  # queued
    assert await by_status(factory, request) == {"connect": 1, "running": 1, "pending": 2,
                                                  "queued": 2}  # fmt: skip

    await close(factory, request, how)

    assert await by_status(factory, request) == {"running": 1, "canceled": 5}
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    await assert_active_tasks_consistent(ctx)
    # the running link may still report; its failure is not retried but canceled next tick
    response = await factory.result(running["id"], server, status="failed", error="late")
    assert response.status_code == 200 and response.json()["data"]["status"] == "failed"
    retry = await factory.client.put(
        f"{WORKER}/links/{running['id']}/retry", headers=factory.worker
    )
    assert retry.status_code == 409
    await tick(ctx)
    assert await by_status(factory, request) == {"canceled": 6}


async def test_dispatcher_never_assigns_a_link_of_a_closed_request(
    ctx: Context, factory: Factory
) -> None:
    server = await factory.server(max_threads=10)
    await beat(factory, server)
    closed, open_ = await factory.request(), await factory.request()
    await factory.links(closed, 2)
    await factory.links(open_, 1)
    # closed behind the API's back: only the dispatcher's own rule keeps its links pending
    async with ctx.db.transaction() as conn:
        await requests_repo.set_status(conn, uuid.UUID(closed["id"]), "completed", ctx.clock.now())

    report = await tick(ctx)

    assert report.assigned == 1
    assert await by_status(factory, closed) == {"pending": 2}
    assert await by_status(factory, open_) == {"queued": 1}


async def test_step_4_cancels_failed_links_of_a_closed_request_whatever_retries_they_have(
    ctx: Context, factory: Factory, clock: FrozenClock
) -> None:
    server = await factory.server()
    request = await factory.request()
    link = await failed_link(factory, request, server)
    listed = await factory.client.get(f"{WORKER}/links/retryable", headers=factory.worker)
    assert [x["id"] for x in listed.json()["data"]] == [link["id"]]
    await close(factory, request, "canceled")
    clock.advance(minutes=90)  # its back-off has long run out: step 3 would retry it

    report = await tick(ctx)

    assert (report.retried, report.exhausted) == (0, 1)
    assert await by_status(factory, request) == {"canceled": 1}
    listed = await factory.client.get(f"{WORKER}/links/retryable", headers=factory.worker)
    assert listed.json()["data"] == []


async def test_bulk_create_naming_a_closed_request_is_409_and_creates_nothing(
    factory: Factory,
) -> None:
    open_, closed = await factory.request(), await factory.request(status="failed")
    items = [{"request_id": open_["id"], "service_type": "entity"} for _ in range(5)]
    items[3] = {"request_id": closed["id"], "service_type": "entity"}

    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )

    assert response.status_code == 409, response.text
    assert response.json()["details"] == [
        {"field": "links[3].request_id", "message": "request is failed"}
    ]
    assert await factory.list_links(status="pending,queued") == []


async def test_assign_and_retry_of_a_closed_request_are_409_and_bulk_retry_skips_them(
    factory: Factory,
) -> None:
    server = await factory.server(max_threads=10)
    closed, open_ = await factory.request(), await factory.request()
    failed_closed = await failed_link(factory, closed, server)
    failed_open = await failed_link(factory, open_, server)
    await close(factory, closed, "completed")
    # a pending link of a closed request: reopened for a moment, then closed again
    await close(factory, closed, "running")
    [pending] = await factory.links(closed, 1)
    async with factory.ctx.db.transaction() as conn:
        await requests_repo.set_status(
            conn, uuid.UUID(closed["id"]), "canceled", factory.ctx.clock.now()
        )

    assert (await factory.assign(pending["id"], server)).status_code == 409
    response = await factory.client.put(
        f"{WORKER}/links/{failed_closed['id']}/retry", headers=factory.worker
    )
    assert response.status_code == 409
    assert "closed" in response.json()["error"]
    response = await factory.client.put(
        f"{WORKER}/links/bulk-retry",
        json={"link_ids": [failed_closed["id"], failed_open["id"]]},
        headers=factory.worker,
    )
    assert response.json() == {"success": True, "updated": 1}
    assert await by_status(factory, closed) == {"failed": 1, "pending": 1}
    assert await by_status(factory, open_) == {"pending": 1}


async def test_reopening_clears_completed_at_and_canceled_links_stay_canceled(
    factory: Factory,
) -> None:
    request = await factory.request()
    await factory.links(request, 2)
    await close(factory, request, "completed")
    assert (await factory.get_request(request["id"]))["completed_at"] is not None
    for status in ("running", "failed", "pending"):
        await close(factory, request, status)
        after = await factory.get_request(request["id"])
        assert (after["completed_at"] is None) is (status != "failed"), status
    assert await by_status(factory, request) == {"canceled": 2}
