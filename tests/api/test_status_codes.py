"""Status codes and error envelopes of every surface (PRODUCT §2): 400, 401, 404, 405, 413."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.factories import ADMIN, TOOL, WORKER, Factory, new_id

LEAKS = ("Traceback", "sqlalchemy", "SELECT", "asyncpg", "sqlite3", 'File "')


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is the error envelope with ``status``, and leaks no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"success", "error", "details"}
    for leak in LEAKS:
        assert leak not in response.text, response.text
    return body  # type: ignore[no-any-return]


def assert_invalid(response: httpx.Response, *fields: str) -> list[dict[str, str]]:
    """A 400 (never 422) whose ``details`` name each of ``fields``."""
    body = assert_error(response, 400)
    details = body["details"]
    assert all(set(d) == {"field", "message"} for d in details)
    named = [d["field"] for d in details]
    for field in fields:
        assert field in named, (field, details)
    return details  # type: ignore[no-any-return]


# --- 401 -------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", f"{WORKER}/servers"),
    ("POST", f"{WORKER}/links/bulk"),
    ("PUT", f"{WORKER}/links/{new_id()}/assign"),
    ("POST", f"{TOOL}/heartbeat"),
    ("POST", f"{TOOL}/links/claim"),
    ("PUT", f"{TOOL}/links/{new_id()}/result"),
    ("GET", f"{ADMIN}/servers"),
    ("POST", f"{ADMIN}/servers"),
    ("PUT", f"{ADMIN}/settings/rate_limit"),
]


async def test_missing_key_is_401(factory: Factory) -> None:
    for method, url in ENDPOINTS:
        response = await factory.client.request(method, url, json={})
        body = assert_error(response, 401)
        assert body["error"] == "Missing X-API-Key header"
        assert "details" not in body
        assert response.headers["www-authenticate"] == "X-API-Key"


async def test_wrong_or_unknown_key_is_401(factory: Factory) -> None:
    tool = await factory.server()
    wrong = {
        "worker": [tool["api_key"], factory.admin_key],
        "tool": [factory.assign_key, factory.admin_key],
        "admin": [tool["api_key"], factory.assign_key],
    }
    for method, url in ENDPOINTS:
        for key in [*wrong[url.split("/")[3]], "asg_" + "x" * 43, ""]:
            response = await factory.client.request(
                method, url, json={}, headers={"X-API-Key": key}
            )
            assert_error(response, 401)


async def test_401_comes_before_invalid_body(factory: Factory) -> None:
    tool = await factory.server()
    wrong = {"worker": tool["api_key"], "tool": factory.assign_key, "admin": tool["api_key"]}
    for method, url in ENDPOINTS:
        for headers in ({}, {"X-API-Key": wrong[url.split("/")[3]]}):
            response = await factory.client.request(
                method,
                url,
                content=b"{this is not json",
                headers={**headers, "Content-Type": "application/json"},
            )
            assert_error(response, 401)


async def test_401_comes_before_unknown_route_and_method(factory: Factory) -> None:
    assert_error(await factory.client.get(f"{WORKER}/no-such-thing"), 401)
    assert_error(await factory.client.delete(f"{WORKER}/servers"), 401)


async def test_deleted_server_key_is_401(factory: Factory) -> None:
    tool = await factory.server()
    response = await factory.client.delete(f"{ADMIN}/servers/{tool['id']}", headers=factory.admin)
    assert response.status_code == 200
    assert_error(await factory.client.post(f"{TOOL}/heartbeat", headers=factory.tool(tool)), 401)


@pytest.mark.parametrize("settings_overrides", [{"admin_key": "bootstrap-admin-key-" + "k" * 20}])
async def test_bootstrap_admin_key(factory: Factory) -> None:
    key = {"X-API-Key": "bootstrap-admin-key-" + "k" * 20}
    response = await factory.client.get(f"{ADMIN}/servers", headers=key)
    assert response.status_code == 200
    assert_error(await factory.client.get(f"{WORKER}/servers", headers=key), 401)


# --- 400 -------------------------------------------------------------------------------------


async def test_bad_json_is_400_naming_the_body(factory: Factory) -> None:
    tool = await factory.server()
    for method, url, headers in (
        ("POST", f"{WORKER}/links/bulk", factory.worker),
        ("PUT", f"{WORKER}/servers/{tool['id']}/status", factory.worker),
        ("PUT", f"{WORKER}/links/bulk-retry", factory.worker),
        ("POST", f"{TOOL}/links/claim", factory.tool(tool)),
        ("POST", f"{ADMIN}/servers", factory.admin),
    ):
        for content in (b'{"links": [', b"nope"):
            response = await factory.client.request(
                method,
                url,
                content=content,
                headers={**headers, "Content-Type": "application/json"},
            )
            details = assert_invalid(response, "body")
            assert details == [{"field": "body", "message": "body is not valid JSON"}]


async def test_missing_and_wrong_shaped_body(factory: Factory) -> None:
    url = f"{WORKER}/links/bulk"
    assert_invalid(await factory.client.post(url, headers=factory.worker), "body")
    assert_invalid(await factory.client.post(url, json=[1, 2], headers=factory.worker), "body")
    assert_invalid(
        await factory.client.post(url, json={"links": "many"}, headers=factory.worker), "links"
    )


async def test_unknown_enum_value_lists_allowed(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    cases = [
        ("PUT", f"/servers/{server['id']}/status", {"status": "asleep"}, "status", "maintenance"),
        ("PUT", f"/requests/{request['id']}/status", {"status": "done"}, "status", "connecting"),
        ("GET", "/servers?status=up", None, "status", "online"),
        ("GET", "/requests?status=running,nope", None, "status", "completed"),
        ("GET", "/links?status=lost", None, "status", "connecting"),
        ("GET", "/accounts?status=gone", None, "status", "banned"),
        ("GET", "/requests?service_type=tv", None, "service_type", "indexing"),
        ("GET", "/sites?type=tv", None, "type", "stacking"),
    ]
    for method, path, body, field, allowed in cases:
        response = await factory.client.request(
            method, WORKER + path, json=body, headers=factory.worker
        )
        details = assert_invalid(response, field)
        message = next(d["message"] for d in details if d["field"] == field)
        assert allowed in message, (path, message)


async def test_malformed_uuid_in_path_is_400(factory: Factory) -> None:
    cases = [
        ("PUT", f"{WORKER}/servers/not-a-uuid/status", "server_id"),
        ("GET", f"{WORKER}/requests/12345/links/count", "request_id"),
        ("PUT", f"{WORKER}/requests/xyz/connect", "request_id"),
        ("PUT", f"{WORKER}/requests/xyz/complete", "request_id"),
        ("PUT", f"{WORKER}/links/xyz/retry", "link_id"),
        ("GET", f"{ADMIN}/servers/xyz", "server_id"),
        ("DELETE", f"{ADMIN}/servers/xyz", "server_id"),
        ("PATCH", f"{ADMIN}/sites/xyz", "site_id"),
    ]
    for method, url, field in cases:
        headers = factory.admin if url.startswith(ADMIN) else factory.worker
        body = {"status": "offline"} if url.endswith("/status") else {}
        response = await factory.client.request(method, url, json=body, headers=headers)
        assert_invalid(response, field)


async def test_malformed_uuid_on_tool_path(factory: Factory) -> None:
    tool = await factory.server()
    # GET /links/{id} shares its prefix with /links/claim, so it only matches UUIDs: 404
    response = await factory.client.get(f"{TOOL}/links/abc", headers=factory.tool(tool))
    assert_error(response, 404)
    response = await factory.client.put(
        f"{TOOL}/links/abc/result", json={"status": "completed"}, headers=factory.tool(tool)
    )
    assert_invalid(response, "link_id")


async def test_bad_query_values_are_400(factory: Factory) -> None:
    cases = [
        ("/requests?limit=0", "limit"),
        ("/links?limit=-1", "limit"),
        ("/links/retryable?limit=0", "limit"),
        ("/sites?limit=abc", "limit"),
        ("/servers?inactive_minutes=-5", "inactive_minutes"),
        ("/links?stale=maybe", "stale"),
        ("/links?server_id=1", "server_id"),
        ("/links/account-stats?email=a@b.c&request_id=1", "request_id"),
    ]
    for path, field in cases:
        response = await factory.client.get(f"{WORKER}{path}", headers=factory.worker)
        assert_invalid(response, field)


# --- 404 / 405 -------------------------------------------------------------------------------


async def test_unknown_route_is_404(factory: Factory) -> None:
    for url, headers in (
        (f"{WORKER}/nothing", factory.worker),
        (f"{ADMIN}/nothing/here", factory.admin),
        ("/api/v2/worker/servers", factory.worker),  # outside the surfaces: any valid key
    ):
        body = assert_error(await factory.client.get(url, headers=headers), 404)
        assert body["error"] == "No such route"
    assert_error(await factory.client.get("/api/v2/worker/servers"), 401)  # fails closed


async def test_unknown_id_is_404(factory: Factory) -> None:
    cases = [
        ("PUT", f"{WORKER}/servers/{{id}}/status", {"status": "offline"}),
        ("GET", f"{WORKER}/requests/{{id}}/links/count", None),
        ("PUT", f"{WORKER}/requests/{{id}}/status", {"status": "running"}),
        ("PUT", f"{WORKER}/requests/{{id}}/connect", None),
        ("PUT", f"{WORKER}/requests/{{id}}/complete", None),
        ("PUT", f"{WORKER}/links/{{id}}/retry", None),
        ("GET", f"{ADMIN}/servers/{{id}}", None),
        ("PATCH", f"{ADMIN}/requests/{{id}}", {"name": "x"}),
        ("PATCH", f"{ADMIN}/accounts/{{id}}", {"status": "active"}),
        ("DELETE", f"{ADMIN}/sites/{{id}}", None),
    ]
    for method, path, body in cases:
        headers = factory.admin if path.startswith(ADMIN) else factory.worker
        response = await factory.client.request(
            method, path.format(id=new_id()), json=body, headers=headers
        )
        assert assert_error(response, 404)["error"].endswith("not found"), path


async def test_wrong_method_is_405(factory: Factory) -> None:
    tool = await factory.server()
    for method, url, headers in (
        ("DELETE", f"{WORKER}/servers", factory.worker),
        ("POST", f"{WORKER}/links", factory.worker),
        ("GET", f"{TOOL}/links/claim", factory.tool(tool)),
        ("PUT", f"{ADMIN}/servers", factory.admin),
    ):
        response = await factory.client.request(method, url, headers=headers)
        body = assert_error(response, 405)
        assert body["error"] == "Method not allowed"


# --- 413 -------------------------------------------------------------------------------------

SMALL = {"max_body_mb": 0.01}  # about 10 KB


@pytest.mark.parametrize("settings_overrides", [SMALL])
async def test_body_over_limit_is_413(factory: Factory) -> None:
    request = await factory.request()
    item = {"request_id": request["id"], "service_type": "entity", "about": "x" * 200}
    url = f"{WORKER}/links/bulk"
    small = await factory.client.post(url, json={"links": [item] * 5}, headers=factory.worker)
    assert small.status_code == 200
    big = await factory.client.post(url, json={"links": [item] * 100}, headers=factory.worker)
    assert assert_error(big, 413)["error"] == "Request body too large"
    assert (await factory.list_links(request_id=request["id"]))[5:] == []


@pytest.mark.parametrize("settings_overrides", [SMALL])
async def test_streamed_body_over_limit_is_413(factory: Factory) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"links": ['
        for _ in range(200):
            yield b'{"request_id": "' + new_id().encode() + b'", "service_type": "entity"},'
        yield b"{}]}"

    response = await factory.client.post(
        f"{WORKER}/links/bulk",
        content=chunks(),
        headers={**factory.worker, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413)


@pytest.mark.parametrize("settings_overrides", [SMALL])
async def test_413_needs_a_valid_key_first(factory: Factory) -> None:
    response = await factory.client.post(
        f"{ADMIN}/servers", content=b"x" * 20_000, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 401)
    response = await factory.client.post(
        f"{ADMIN}/servers",
        content=b"x" * 20_000,
        headers={**factory.admin, "Content-Type": "application/json"},
    )
    assert_error(response, 413)
