"""Worker API: retryable links, retry, bulk-retry and mark-final-failed."""

from __future__ import annotations

from assign.services.context import Context
from tests.api import worker_calls as calls
from tests.factories import WORKER, Factory, new_id
from tests.invariants import assert_active_tasks_consistent


async def test_retryable_lists_failed_with_retries_left(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    social = await factory.request(service_type="social")
    retryable = await calls.failed(factory, request, server)
    other = await calls.failed(factory, social, server)
    await calls.failed(factory, request, server, max_retries=0)  # exhausted
    await factory.links(request, 1)  # pending

    response = await calls.get(factory, "/links/retryable")
    assert response.status_code == 200
    body = response.json()
    assert set(calls.ids(body["data"])) == {retryable["id"], other["id"]}
    assert body["total"] == 2
    assert all(item["status"] == "failed" for item in body["data"])
    assert calls.ids(
        (await calls.get(factory, "/links/retryable", service_type="social")).json()["data"]
    ) == [other["id"]]
    assert calls.ids(
        (await calls.get(factory, "/links/retryable", request_id=request["id"])).json()["data"]
    ) == [retryable["id"]]
    assert len((await calls.get(factory, "/links/retryable", limit=1)).json()["data"]) == 1


async def test_retry_create_phase_goes_back_to_pending(factory: Factory, ctx: Context) -> None:
    server = await factory.server()
    request = await factory.request()
    link = await calls.failed(factory, request, server, max_retries=2)
    assert link["server_id"] == server["id"]
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0

    response = await calls.put(factory, f"/links/{link['id']}/retry")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["status"], data["retry_count"], data["server_id"]) == ("pending", 1, None)
    assert data["phase"] == "create" and data["started_at"] is None
    assert calls.ids(await factory.list_links()) == [link["id"]]

    # fail again: retry_count 1 < 2, retryable once more; then exhausted
    await factory.run_link(data, server, status="failed")
    assert (await calls.put(factory, f"/links/{link['id']}/retry")).json()["data"][
        "retry_count"
    ] == 2
    await factory.run_link(data, server, status="failed")
    response = await calls.put(factory, f"/links/{link['id']}/retry")
    assert response.status_code == 409
    assert "retries" in response.json()["error"]
    await assert_active_tasks_consistent(ctx)


async def test_retry_connect_phase_keeps_server(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request(status="running")
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p")
    assert (await calls.put(factory, f"/requests/{request['id']}/connect")).status_code == 200
    (claimed,) = await factory.claim(server)
    assert claimed["status"] == "connecting"
    assert (await factory.result(link["id"], server, status="failed")).status_code == 200

    data = (await calls.put(factory, f"/links/{link['id']}/retry")).json()["data"]
    assert (data["status"], data["phase"], data["server_id"], data["retry_count"]) == (
        "connect",
        "connect",
        server["id"],
        1,
    )


async def test_retry_conflicts_and_not_found(factory: Factory) -> None:
    request = await factory.request()
    (pending,) = await factory.links(request, 1)
    response = await calls.put(factory, f"/links/{pending['id']}/retry")
    assert response.status_code == 409
    assert "pending" in response.json()["error"]
    response = await calls.put(factory, f"/links/{new_id()}/retry")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Link not found"}


async def test_bulk_retry_counts_only_retryable(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    a = await calls.failed(factory, request, server)
    b = await calls.failed(factory, request, server)
    exhausted = await calls.failed(factory, request, server, max_retries=0)
    (pending,) = await factory.links(request, 1)
    ids = [a["id"], b["id"], b["id"], exhausted["id"], pending["id"], new_id()]
    response = await calls.put(factory, "/links/bulk-retry", {"link_ids": ids})
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 2}
    assert set(calls.ids(await factory.list_links(request_id=request["id"]))) == {
        a["id"],
        b["id"],
        pending["id"],
    }
    response = await calls.put(factory, "/links/bulk-retry", {"link_ids": [a["id"]]})
    assert response.json() == {"success": True, "updated": 0}
    response = await calls.put(factory, "/links/bulk-retry", {"link_ids": []})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "link_ids"
    response = await calls.put(factory, "/links/bulk-retry", {"link_ids": ["x"]})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "link_ids[0]"


async def test_mark_final_failed(factory: Factory) -> None:
    server = await factory.server()
    r1 = await factory.request()
    r2 = await factory.request()
    e1 = await calls.failed(factory, r1, server, max_retries=0)
    e2 = await calls.failed(factory, r2, server, max_retries=0)
    e3 = await calls.failed(factory, r2, server, max_retries=0)
    retryable = await calls.failed(factory, r1, server)

    response = await calls.put(factory, "/links/mark-final-failed", {"request_id": r2["id"]})
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 2}
    canceled = await factory.list_links(status="canceled")
    assert set(calls.ids(canceled)) == {e2["id"], e3["id"]}

    response = await factory.client.put(f"{WORKER}/links/mark-final-failed", headers=factory.worker)
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 1}
    assert set(calls.ids(await factory.list_links(status="canceled"))) == {
        e1["id"],
        e2["id"],
        e3["id"],
    }
    assert calls.ids(await factory.list_links(status="failed")) == [retryable["id"]]

    response = await calls.put(factory, "/links/mark-final-failed", {})
    assert response.json() == {"success": True, "updated": 0}
    response = await calls.put(factory, "/links/mark-final-failed", {"request_id": "x"})
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "request_id"
