"""PRODUCT §9 "A server gets work only when it is ready" and server deletion, on both databases."""

from __future__ import annotations

from typing import Any

from assign.clock import FrozenClock
from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.api.test_closed_requests import beat, by_status
from tests.dispatcher.test_tick import no_rate_limit
from tests.factories import ADMIN, WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent


async def test_the_dispatcher_assigns_only_to_servers_with_a_recent_heartbeat(
    ctx: Context, factory: Factory, clock: FrozenClock
) -> None:
    silent = await factory.server(max_threads=5, priority=9)  # never sent a heartbeat
    ready = await factory.server(max_threads=2)
    await beat(factory, ready)
    request = await factory.request()
    await factory.links(request, 4)

    report = await tick(ctx)

    assert report.assigned == 2
    assert (await factory.get_server(silent["id"]))["active_tasks"] == 0
    assert (await factory.get_server(ready["id"]))["active_tasks"] == 2
    # 4 minutes on the heartbeat is still ready; the silent one is still online (created < 5 min)
    clock.advance(minutes=4)
    assert (await factory.get_server(silent["id"]))["status"] == "online"
    await beat(factory, silent)
    report = await tick(ctx)
    assert report.assigned == 2
    assert (await factory.get_server(silent["id"]))["active_tasks"] == 2


async def test_explicit_placements_on_a_server_without_heartbeat_are_obeyed(
    factory: Factory,
) -> None:
    silent = await factory.server(max_threads=5)
    request = await factory.request()
    [link] = await factory.links(request, 1)
    assert (await factory.assign(link["id"], silent)).status_code == 200
    await factory.links(request, 1, server_id=silent["id"])
    assert await by_status(factory, request) == {"queued": 2}


async def test_each_tick_returns_queued_links_on_a_server_not_online_to_pending(
    ctx: Context, factory: Factory
) -> None:
    await no_rate_limit(factory)  # the placements count as dispatches of their accounts
    resting = await factory.server(max_threads=5, status="maintenance")
    ready = await factory.server(max_threads=5)
    await beat(factory, resting, ready)
    request = await factory.request()
    # a placement on a server in maintenance is accepted ...
    await factory.links(request, 3, server_id=resting["id"])
    assert (await factory.get_server(resting["id"]))["active_tasks"] == 3

    report = await tick(ctx)  # ... and the next tick sends the links elsewhere

    assert (report.released, report.assigned) == (3, 3)
    assert (await factory.get_server(resting["id"]))["active_tasks"] == 0
    queued = await factory.list_links(request_id=request["id"], status="queued")
    assert {link["server_id"] for link in queued} == {ready["id"]}
    await assert_active_tasks_consistent(ctx)


async def _delete(factory: Factory, server: dict[str, Any]) -> int:
    response = await factory.client.delete(f"{ADMIN}/servers/{server['id']}", headers=factory.admin)
    return response.status_code


async def test_deleting_a_server_is_refused_only_while_it_holds_slots(factory: Factory) -> None:
    for state in ("queued", "running", "connecting"):
        server = await factory.server()
        request = await factory.request()
        [link] = await factory.links(request, 1, server_id=server["id"])
        if state != "queued":
            await factory.claim(server)
        if state == "connecting":
            await factory.result(link["id"], server, profile_url="https://p.test")
            await factory.client.put(
                f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
            )
            assert [c["status"] for c in await factory.claim(server)] == ["connecting"]
        assert await _delete(factory, server) == 409, state


async def test_deleting_a_server_cancels_its_connect_links_so_their_request_can_close(
    ctx: Context, factory: Factory
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request(status="running")
    links = await factory.links(request, 2, server_id=server["id"])
    await factory.claim(server)
    for link in links:
        await factory.result(link["id"], server, profile_url="https://p.test")
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.json()["links_connect"] == 2
    [first] = await factory.claim(server, limit=1)
    failed = await factory.result(first["id"], server, status="failed", error="captcha")
    assert failed.json()["data"]["phase"] == "connect"

    assert await _delete(factory, server) == 200

    canceled = await factory.list_links(request_id=request["id"], status="canceled")
    assert [(x["error"], x["server_id"]) for x in canceled] == [("server deleted", None)] * 2
    report = await tick(ctx)
    assert sum(report.finished.values()) == 1  # closed: nothing is left to wait for


async def test_a_bulk_placement_onto_a_server_that_is_gone_is_400(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    assert await _delete(factory, server) == 200
    items = [{"request_id": request["id"], "service_type": "entity"} for _ in range(3)]
    items[2]["server_id"] = server["id"]
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )
    assert response.status_code == 400
    assert [d["field"] for d in response.json()["details"]] == ["links[2].server_id"]
    items[2]["server_id"] = new_id()
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )
    assert [d["field"] for d in response.json()["details"]] == ["links[2].server_id"]
