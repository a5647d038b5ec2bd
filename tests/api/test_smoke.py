"""The basic flow end to end on both databases: create, assign, claim, result, counts."""

from __future__ import annotations

from tests.factories import WORKER, Factory


async def test_create_assign_claim_complete(factory: Factory) -> None:
    server = await factory.server(max_threads=2)
    request = await factory.request()
    links = await factory.links(request, 3)
    assert [link["status"] for link in links] == ["pending"] * 3

    done = await factory.run_link(links[0], server, profile_url="https://p/1")
    assert done["status"] == "completed"
    assert done["profile_url"] == "https://p/1"
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    assert (await factory.get_request(request["id"]))["created_links"] == 1

    response = await factory.client.get(
        f"{WORKER}/requests/{request['id']}/links/count", headers=factory.worker
    )
    assert response.json() == {
        "success": True,
        "request_id": request["id"],
        "counts": [{"status": "completed", "count": 1}, {"status": "pending", "count": 2}],
        "total": 3,
        "profile_count": 1,
        "post_count": 0,
    }
