"""Worker API: a request's status, connect and complete (PUT /requests/:id/...)."""

from __future__ import annotations

import pytest

from assign.clock import FrozenClock
from assign.services.context import Context
from tests.api import worker_calls as calls
from tests.factories import Factory, new_id
from tests.invariants import assert_active_tasks_consistent

# --- PUT /requests/:id/status -----------------------------------------------------------------


async def test_status_sets_timestamps(factory: Factory, clock: FrozenClock) -> None:
    request = await factory.request()
    url = f"/requests/{request['id']}/status"
    t_run = clock.advance(minutes=1)
    response = await calls.put(factory, url, {"status": "running"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "running"
    started = data["started_at"]
    assert started is not None and started.endswith("Z")
    assert started[:19] == t_run.strftime("%Y-%m-%dT%H:%M:%S")
    assert data["completed_at"] is None

    clock.advance(minutes=1)
    data = (await calls.put(factory, url, {"status": "running"})).json()["data"]
    assert data["started_at"] == started  # set once

    t_done = clock.advance(minutes=1)
    data = (await calls.put(factory, url, {"status": "completed"})).json()["data"]
    assert data["status"] == "completed"
    assert data["started_at"] == started
    assert data["completed_at"][:19] == t_done.strftime("%Y-%m-%dT%H:%M:%S")
    assert await factory.get_request(request["id"]) == data


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_status_final_sets_completed_at(factory: Factory, status: str) -> None:
    request = await factory.request()
    data = (
        await calls.put(factory, f"/requests/{request['id']}/status", {"status": status})
    ).json()["data"]
    assert data["status"] == status
    assert data["started_at"] is None
    assert data["completed_at"] is not None


async def test_status_keeps_created_links(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server)
    for status in ("pending", "running", "completed"):
        data = (
            await calls.put(factory, f"/requests/{request['id']}/status", {"status": status})
        ).json()["data"]
        assert data["created_links"] == 1


async def test_status_errors(factory: Factory) -> None:
    request = await factory.request()
    response = await calls.put(factory, f"/requests/{request['id']}/status", {"status": "done"})
    assert response.status_code == 400
    detail = response.json()["details"][0]
    assert detail["field"] == "status"
    for allowed in ("pending", "running", "connecting", "completed", "failed", "canceled"):
        assert allowed in detail["message"]
    response = await calls.put(factory, f"/requests/{new_id()}/status", {"status": "running"})
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Request not found"}


# --- PUT /requests/:id/connect ----------------------------------------------------------------


async def test_connect_moves_profiled_links_and_cancels_the_rest(
    factory: Factory, ctx: Context
) -> None:
    creator = await factory.server(max_threads=10)
    other = await factory.server(max_threads=10)
    request = await factory.request(status="running")
    links = await factory.links(request, 7)
    await factory.run_link(links[0], creator, profile_url="https://p/0")
    await factory.run_link(links[1], other, profile_url="https://p/1")
    await factory.run_link(links[2], creator)  # completed without a profile
    await factory.run_link(links[3], creator, status="failed", error="x")
    assert (await factory.assign(links[4]["id"], other)).status_code == 200
    claimed = await factory.claim(other)
    assert [c["id"] for c in claimed] == [links[4]["id"]]  # running, no profile
    assert (await factory.assign(links[5]["id"], other)).status_code == 200  # queued
    # links[6] stays pending
    assert (await factory.get_server(other["id"]))["active_tasks"] == 2

    response = await calls.put(factory, f"/requests/{request['id']}/connect")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "updated": True,
        "links_connect": 2,
        "links_canceled": 5,
    }
    assert (await factory.get_request(request["id"]))["status"] == "connecting"
    assert (await factory.get_server(other["id"]))["active_tasks"] == 0

    connect = await factory.list_links(request_id=request["id"], status="connect")
    by_id = {link["id"]: link for link in connect}
    assert set(by_id) == {links[0]["id"], links[1]["id"]}
    assert by_id[links[0]["id"]]["server_id"] == creator["id"]
    assert by_id[links[1]["id"]]["server_id"] == other["id"]
    assert all(link["phase"] == "connect" for link in connect)
    assert all(link["profile_url"] for link in connect)
    canceled = await factory.list_links(request_id=request["id"], status="canceled")
    assert {link["id"] for link in canceled} == {lk["id"] for lk in links[2:]}

    # the running link was canceled under its server: its result is now a conflict
    response = await factory.result(links[4]["id"], other)
    assert response.status_code == 409

    again = await calls.put(factory, f"/requests/{request['id']}/connect")
    assert again.status_code == 200
    assert again.json() == {
        "success": True,
        "updated": True,
        "links_connect": 0,
        "links_canceled": 0,
    }
    assert len(await factory.list_links(request_id=request["id"], status="connect")) == 2
    await assert_active_tasks_consistent(ctx)


async def test_connect_unknown_request(factory: Factory) -> None:
    response = await calls.put(factory, f"/requests/{new_id()}/connect")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Request not found"}


# --- PUT /requests/:id/complete ---------------------------------------------------------------


async def test_complete_cancels_waiting_links_and_lets_running_finish(
    factory: Factory, ctx: Context
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request(status="running")
    links = await factory.links(request, 5)
    await factory.run_link(links[0], server, profile_url="https://p/0")
    assert (await factory.assign(links[1]["id"], server)).status_code == 200
    assert [c["id"] for c in await factory.claim(server)] == [links[1]["id"]]  # running
    assert (await factory.assign(links[2]["id"], server)).status_code == 200  # queued
    assert (await factory.get_server(server["id"]))["active_tasks"] == 2

    response = await calls.put(factory, f"/requests/{request['id']}/complete")
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": True}
    got = await factory.get_request(request["id"])
    assert got["status"] == "completed" and got["completed_at"] is not None
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    canceled = await factory.list_links(request_id=request["id"], status="canceled")
    assert {link["id"] for link in canceled} == {links[2]["id"], links[3]["id"], links[4]["id"]}
    await assert_active_tasks_consistent(ctx)

    response = await factory.result(links[1]["id"], server, post_url="https://x/1")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "completed"
    got = await factory.get_request(request["id"])
    assert got["status"] == "completed"
    assert got["created_links"] == 2
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    await assert_active_tasks_consistent(ctx)


async def test_complete_unknown_request(factory: Factory) -> None:
    response = await calls.put(factory, f"/requests/{new_id()}/complete")
    assert response.status_code == 404
    assert response.json()["success"] is False
