"""The Python client against the real application, on SQLite and PostgreSQL: async over ASGI,
sync over HTTP to ``assign serve``; every worker and tool endpoint, and its errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from assign.client import (
    AdminClient,
    ApiError,
    AssignClient,
    AsyncAdminClient,
    AsyncAssignClient,
    AsyncToolClient,
    ToolClient,
    core,
)
from assign.client import admin as admin_module
from assign.client.types import Server
from assign.demo import service
from tests.conftest import TEST_SECRET
from tests.factories import Factory

URL = "http://assign.test"


@pytest.fixture
async def worker(factory: Factory) -> AsyncIterator[AsyncAssignClient]:
    async with AsyncAssignClient(URL, factory.assign_key, http=factory.client) as c:
        yield c


@pytest.fixture
async def admin(factory: Factory) -> AsyncIterator[AsyncAdminClient]:
    async with AsyncAdminClient(URL, factory.admin_key, http=factory.client) as c:
        yield c


async def tool_for(
    admin: AsyncAdminClient, http: httpx.AsyncClient, **values: object
) -> tuple[Server, AsyncToolClient]:
    server = await admin.create_server(f"tool-{uuid.uuid4().hex[:6]}", max_threads=3, **values)  # type: ignore[arg-type]
    return server, AsyncToolClient(URL, server["api_key"], http=http)


# --- async ---------------------------------------------------------------------------------


async def test_tool_server_life(
    worker: AsyncAssignClient, admin: AsyncAdminClient, factory: Factory
) -> None:
    server, tool = await tool_for(admin, factory.client)
    request = await admin.create_request("entity", "campaign", priority=5)
    links = [
        {
            "request_id": request["id"],
            "service_type": "entity",
            "email": f"u{i}@example.com",
            "password": "pw",
        }
        for i in range(3)
    ]
    assert await worker.create_links(links) == 3

    pending = await worker.list_links(request_id=request["id"])
    assert [link["status"] for link in pending] == ["pending"] * 3
    queued = await worker.assign_link(pending[0]["id"], server["id"])
    assert queued["status"] == "queued" and queued["server_id"] == server["id"]

    beat = await tool.heartbeat(active_threads=1)
    assert beat["id"] == server["id"] and beat["last_health_check"] is not None
    claimed = await tool.claim(limit=10)
    assert [(c["id"], c["status"], c["password"]) for c in claimed] == [
        (queued["id"], "running", "pw")
    ]
    assert (await tool.get_link(queued["id"]))["status"] == "running"

    done = await tool.report_result(
        queued["id"], "completed", profile_url="https://p/1", details={"n": 1}
    )
    assert (done["status"], done["profile_url"], done["details"]) == (
        "completed",
        "https://p/1",
        {"n": 1},
    )

    counts = await worker.count_links(request["id"])
    assert counts == {
        "request_id": request["id"],
        "counts": [{"status": "completed", "count": 1}, {"status": "pending", "count": 2}],
        "total": 3,
        "profile_count": 1,
        "post_count": 0,
    }
    stats = await worker.account_stats(str(queued["email"]), request_id=request["id"])
    assert (stats["total_completed"], stats["request_completed"], stats["pending_count"]) == (
        1,
        1,
        0,
    )
    assert (await admin.stats())["links"]["completed"] == 1


async def test_worker_servers_and_requests(
    worker: AsyncAssignClient, admin: AsyncAdminClient, factory: Factory
) -> None:
    server, _ = await tool_for(admin, factory.client, priority=3)
    listed = await worker.list_servers(status=["online"])
    assert server["id"] in {s["id"] for s in listed}
    assert all(s["status"] == "online" for s in listed)
    never = await worker.list_servers(inactive_minutes=1)
    assert server["id"] in {s["id"] for s in never}
    available = await worker.available_servers(service="tool")
    assert [(s["id"], s["avail_slots"]) for s in available] == [(server["id"], 3)]
    assert (await worker.set_server_status(server["id"], "maintenance"))["status"] == "maintenance"
    assert await worker.available_servers() == []

    request = await admin.create_request("social", "one")
    assert request["id"] in {
        r["id"] for r in await worker.list_requests(service_type="social", limit=5)
    }
    running = await worker.set_request_status(request["id"], "running")
    assert running["status"] == "running" and running["started_at"] is not None
    assert await worker.completable_requests() == []  # no link yet
    assert await worker.list_requests(status="completed") == []
    assert await worker.connect_request(request["id"]) == {
        "updated": True,
        "links_connect": 0,
        "links_canceled": 0,
    }
    assert await worker.complete_request(request["id"]) is True
    assert (await admin.get_request(request["id"]))["status"] == "completed"
    assert (
        await worker.completable_requests(
            status="completed", all_links_done=True, no_active_links=True
        )
    ) == []


async def test_worker_retries_and_catalog(
    worker: AsyncAssignClient, admin: AsyncAdminClient, factory: Factory
) -> None:
    server, tool = await tool_for(admin, factory.client)
    request = await admin.create_request("entity", "retries")
    await worker.create_links(
        [
            {"request_id": request["id"], "service_type": "entity", "max_retries": 1}
            for _ in range(3)
        ]
    )
    for link in await worker.list_links(request_id=request["id"]):
        await worker.assign_link(link["id"], server["id"])
    claimed = await tool.claim()
    for link in claimed:
        await tool.report_result(link["id"], "failed", error="site down")
    assert await worker.list_links(stale=True, timeout_minutes=0) == []

    retryable = await worker.retryable_links(
        request_id=request["id"], service_type="entity", limit=10
    )
    assert len(retryable) == 3 and all(r["error"] == "site down" for r in retryable)
    again = await worker.retry_link(retryable[0]["id"])
    assert (again["status"], again["retry_count"]) == ("pending", 1)
    assert await worker.bulk_retry([r["id"] for r in retryable]) == 2
    # the three are pending again with one retry used; fail them once more to exhaust them
    for link in await worker.list_links(request_id=request["id"]):
        await worker.assign_link(link["id"], server["id"])
    for link in await tool.claim():
        await tool.report_result(link["id"], "failed")
    assert await worker.mark_final_failed(request_id=request["id"]) == 3
    assert await worker.mark_final_failed() == 0

    site = await admin.create_site("example.com", "entity")
    assert [s["id"] for s in await worker.list_sites(ids=[site["id"]])] == [site["id"]]
    assert [s["name"] for s in await worker.list_sites(type="entity", active=True)] == [
        "example.com"
    ]
    group = str(uuid.uuid4())
    await admin.create_account(group, "poster@example.com", password="hunter2")
    accounts = await worker.list_accounts(group_id=group, status="active")
    assert [(a["email"], a.get("password")) for a in accounts] == [
        ("poster@example.com", "hunter2")
    ]
    assert await worker.get_settings("rate_limit") == {
        "max_posts_per_day": "50",
        "cooldown_minutes": "5",
    }
    assert await admin.put_settings("rate_limit", {"cooldown_minutes": 0}) == {
        "max_posts_per_day": "50",
        "cooldown_minutes": "0",
    }
    assert await worker.get_settings("nothing") == {}


async def test_errors_carry_status_and_message(
    worker: AsyncAssignClient, admin: AsyncAdminClient, factory: Factory
) -> None:
    server, tool = await tool_for(admin, factory.client)
    other, other_tool = await tool_for(admin, factory.client)
    request = await admin.create_request("entity", "errors")
    await worker.create_links([{"request_id": request["id"], "service_type": "entity"}])
    (link,) = await worker.list_links(request_id=request["id"])
    await worker.assign_link(link["id"], server["id"])

    with pytest.raises(ApiError) as conflict:
        await worker.assign_link(link["id"], other["id"])
    assert conflict.value.status_code == 409 and conflict.value.message
    assert "PUT" in str(conflict.value) and link["id"] in conflict.value.url

    with pytest.raises(ApiError) as invalid:
        await worker.create_links([{"request_id": request["id"], "service_type": "nope"}])
    assert invalid.value.status_code == 400
    assert [d["field"] for d in invalid.value.details] == ["links[0].service_type"]

    with pytest.raises(ApiError) as foreign:
        await other_tool.get_link(link["id"])
    assert foreign.value.status_code == 404

    with pytest.raises(ApiError) as not_running:
        await tool.report_result(link["id"], "completed")
    assert not_running.value.status_code == 409

    wrong_key = AsyncAssignClient(URL, server["api_key"], http=factory.client)
    with pytest.raises(ApiError) as unauthorized:
        await wrong_key.list_servers()
    assert (unauthorized.value.status_code, unauthorized.value.message) == (
        401,
        "Invalid API key or not an assign server",
    )

    with pytest.raises(ValueError):
        await worker.retry_link("not-a-uuid")


async def test_idempotent_creates(
    worker: AsyncAssignClient, admin: AsyncAdminClient, factory: Factory
) -> None:
    request = await admin.create_request("entity", "once", idempotency_key="req-1")
    assert (await admin.create_request("entity", "once", idempotency_key="req-1"))["id"] == request[
        "id"
    ]
    batch = [{"request_id": request["id"], "service_type": "entity"}] * 2
    assert await worker.create_links(batch, idempotency_key="batch-1") == 2
    assert await worker.create_links(batch, idempotency_key="batch-1") == 2
    assert len(await worker.list_links(request_id=request["id"])) == 2
    with pytest.raises(ApiError) as reused:
        await worker.create_links(batch[:1], idempotency_key="batch-1")
    assert reused.value.status_code == 409


async def test_service_endpoints(admin: AsyncAdminClient) -> None:
    assert (await admin.ready())["status"] == "ready"
    assert "assign_http_requests_total" in await admin.metrics()


# --- sync ----------------------------------------------------------------------------------


ADMIN_KEY = "admin-key-for-sync-tests"


@pytest.fixture
def served(clean_database: str, tmp_path: Path) -> Iterator[str]:
    """``assign serve --no-dispatcher`` on the test database, on a port of 8200-8299; its URL."""
    env = {
        "ASSIGN_DATABASE_URL": clean_database,
        "ASSIGN_ADMIN_KEY": ADMIN_KEY,
        "ASSIGN_SECRET_KEY": TEST_SECRET,
        "ASSIGN_LOG_LEVEL": "WARNING",
    }
    port = service.free_port(range(8200, 8300))
    with service.running_service(
        env=env, log_path=tmp_path / "serve.log", port=port, dispatcher=False
    ) as running:
        yield running.url


@pytest.mark.slow
def test_sync_clients(served: str) -> None:
    with AdminClient(served, ADMIN_KEY) as admin:
        assign = admin.create_server("assign-1", service="assign")
        server = admin.create_server("tool-1", max_threads=2)
        request = admin.create_request("podcast", "sync")
        worker = AssignClient(served, assign["api_key"])
        tool = ToolClient(served, server["api_key"])

        assert (
            worker.create_links([{"request_id": request["id"], "service_type": "podcast"}] * 2) == 2
        )
        for link in worker.list_links(request_id=request["id"]):
            worker.assign_link(link["id"], server["id"])
        assert tool.heartbeat()["status"] == "online"
        claimed = tool.claim(limit=5)
        assert len(claimed) == 2
        tool.report_result(claimed[0]["id"], "completed", post_url="https://post/1")
        tool.report_result(claimed[1]["id"], "failed", error="captcha")
        assert worker.count_links(request["id"])["post_count"] == 1
        assert admin.get_server(server["id"])["active_tasks"] == 0
        assert admin.update_server(server["id"], priority=7)["priority"] == 7
        with pytest.raises(ApiError) as gone:
            admin.get_request(str(uuid.uuid4()))
        assert gone.value.status_code == 404
        assert admin.delete_server(server["id"]) is True
        worker.close()
        tool.close()


def test_sync_client_owns_its_http_client() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == "k"
        assert request.url.params["status"] == "pending,running"
        return httpx.Response(503, text="upstream down", headers={"Retry-After": "2"})

    worker = AssignClient("http://x/", "k", transport=httpx.MockTransport(handler))
    with worker, pytest.raises(ApiError) as down:
        worker.list_requests(status=["pending", "running"])
    assert (down.value.status_code, down.value.retry_after) == (503, 2.0)
    assert down.value.message == "Service Unavailable"
    assert worker.http.is_closed


# --- pieces --------------------------------------------------------------------------------


def test_query_parameters() -> None:
    some_id = uuid.uuid4()
    assert core.query(a=None, b=True, c=False, d=["x", "y"], e=some_id, f=2.5) == {
        "b": "true",
        "c": "false",
        "d": "x,y",
        "e": str(some_id),
        "f": "2.5",
    }
    with pytest.raises(TypeError):
        core.query(a=object())


def test_metrics_keep_labels_and_sum_them() -> None:
    text = (
        "# HELP assign_links_rescued_total x\n"
        'assign_links_rescued_total{reason="server_lost"} 3.0\n'
        'assign_links_rescued_total{reason="stale"} 2.0\n'
        "assign_links_retried_total 4.0\n"
    )
    assert admin_module.parse_metrics(httpx.Response(200, text=text)) == {
        'assign_links_rescued_total{reason="server_lost"}': 3.0,
        'assign_links_rescued_total{reason="stale"}': 2.0,
        "assign_links_rescued_total": 5.0,
        "assign_links_retried_total": 4.0,
    }
