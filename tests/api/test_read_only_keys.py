"""A read-only admin key (``assign admin-key create --read-only``) reads the admin API and is
refused every write with 403, on both databases."""

from __future__ import annotations

import uuid

import httpx

from assign.services import catalog
from assign.services.context import Context
from tests.factories import Factory

ADMIN = "/api/v1/admin"


async def test_reads_are_answered(
    ctx: Context, client: httpx.AsyncClient, factory: Factory
) -> None:
    key = {"X-API-Key": await catalog.create_admin_key(ctx, name="viewer", read_only=True)}
    server = await factory.server()
    for path in ("/servers", f"/servers/{server['id']}", "/requests", "/stats", "/settings"):
        response = await client.get(ADMIN + path, headers=key)
        assert response.status_code == 200, (path, response.text)


async def test_writes_are_refused(
    ctx: Context, client: httpx.AsyncClient, factory: Factory
) -> None:
    key = {"X-API-Key": await catalog.create_admin_key(ctx, name="viewer", read_only=True)}
    server = await factory.server()
    some = str(uuid.uuid4())
    attempts = [
        ("POST", "/servers", {"name": "x", "service": "tool"}),
        ("PATCH", f"/servers/{server['id']}", {"priority": 5}),
        ("DELETE", f"/servers/{server['id']}", None),
        ("PUT", "/settings/rate_limit", {"settings": {"cooldown_minutes": 1}}),
        ("DELETE", f"/accounts/{some}", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, ADMIN + path, json=body, headers=key)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json() == {"success": False, "error": "This admin key is read-only"}
    # nothing changed, and a full key still writes
    assert (await factory.get_server(server["id"]))["priority"] == server["priority"]
    done = await client.patch(
        f"{ADMIN}/servers/{server['id']}", json={"priority": 5}, headers=factory.admin
    )
    assert done.status_code == 200
