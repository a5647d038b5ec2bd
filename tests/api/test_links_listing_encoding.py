"""GET /links and GET /servers/available on PostgreSQL have the database encode the JSON (db.json).

It must answer what the row path (list_links, views.link, responses.dumps) answers: the same
items in the same order, the same keys in the same order, the same values, timestamps included.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from assign.api.responses import dumps, listing
from assign.db import views
from assign.db.json import JSONArray
from assign.db.repositories import links as repo
from assign.db.repositories import servers as servers_repo
from assign.db.tables import links, servers
from tests.factories import Factory

pytestmark = pytest.mark.postgres

ODD_TEXT = 'quote " back \\ slash / nl \n tab \t ctl \x01 \x1f del \x7f ü 😀 \u2028 end'


def _pairs(raw: bytes) -> Any:
    return json.loads(raw, object_pairs_hook=list)


def _assert_same_listing(encoded: JSONArray, items: list[dict[str, Any]], case: Any) -> None:
    """The database-encoded answer is the row path's answer: items, order, keys and values."""
    expected = dumps({"success": True, "data": items, "total": len(items)})
    assert _pairs(listing(encoded).body) == _pairs(expected), case


@pytest.fixture
def db_kind() -> str:
    return "postgres"


async def test_database_encoded_listing_equals_row_listing(factory: Factory) -> None:
    request = await factory.request(priority=2)
    other = await factory.request(service_type="social")
    server = await factory.server()
    await factory.links(request, 3, about=ODD_TEXT, details={"a": [1, 2.5, -0.001, None, True]})
    await factory.links(request, 2, email=None, details=None, username="ü")
    await factory.links(other, 2, server_id=server["id"], details={"nested": {"x": "y\u0001"}})
    async with factory.ctx.db.transaction() as conn:
        # whole-second and sub-second timestamps, and each of the optional ones set
        await conn.execute(
            links.update()
            .where(links.c.request_id == request["id"], links.c.email.is_(None))
            .values(created_at=sa.text("date_trunc('second', created_at) - interval '1 day'"))
        )
        await conn.execute(
            links.update()
            .where(links.c.request_id == other["id"])
            .values(
                started_at=sa.text("'2025-01-01 00:00:00.000001+00'::timestamptz"),
                completed_at=sa.text("'1999-12-31 23:59:59.999999+05'::timestamptz"),
                error=ODD_TEXT,
                profile_url="https://example.com/ü",
            )
        )
    cases: list[dict[str, Any]] = [
        {"statuses": ["pending"]},
        {"statuses": ["pending", "queued"]},
        {"statuses": ["queued"], "server_id": server["id"]},
        {"statuses": ["pending"], "request_id": request["id"], "limit": 2},
        {"statuses": ["pending"], "service_type": "social"},
        {"statuses": ["canceled"]},
    ]
    async with factory.ctx.db.read() as conn:
        for case in cases:
            args = {"service_type": None, "request_id": None, "server_id": None, "limit": 1000}
            args.update(case)
            items = [views.link(r) for r in await repo.list_links(conn, **args)]
            _assert_same_listing(await repo.list_links_json(conn, **args), items, case)
    # through the API as well
    response = await factory.client.get(
        "/api/v1/worker/links", params={"status": "pending,queued"}, headers=factory.worker
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["total"] == len(body["data"]) == 7
    assert list(body["data"][0]) == list(views.LINK_FIELDS)


async def test_database_encoded_available_servers_equal_row_listing(factory: Factory) -> None:
    a = await factory.server(priority=3, max_threads=5, service_types=["social", "entity"])
    await factory.server(priority=3, max_threads=9)
    full = await factory.server(priority=1, max_threads=2)
    async with factory.ctx.db.transaction() as conn:
        # timestamps set with and without microseconds (others never set); odd text
        await conn.execute(
            servers.update()
            .where(servers.c.id == a["id"])
            .values(
                last_health_check=sa.text("'2025-01-01 00:00:00.000001+00'::timestamptz"),
                last_active=sa.text("'1999-12-31 23:59:59+05'::timestamptz"),
                ip=ODD_TEXT,
                active_tasks=1,
            )
        )
        await conn.execute(
            servers.update().where(servers.c.id == full["id"]).values(active_tasks=2)
        )
    cases: list[dict[str, Any]] = [
        {"statuses": ["online"], "service": None},
        {"statuses": ["online", "offline"], "service": "tool"},
        {"statuses": ["online"], "service": "assign"},
        {"statuses": ["maintenance"], "service": None},
    ]
    async with factory.ctx.db.read() as conn:
        for case in cases:
            rows = await servers_repo.list_available(conn, **case, limit=1000)
            encoded = await servers_repo.list_available_json(conn, **case, limit=1000)
            _assert_same_listing(encoded, [views.server(r) for r in rows], case)
    response = await factory.client.get("/api/v1/worker/servers/available", headers=factory.worker)
    body = response.json()
    assert response.status_code == 200 and body["total"] == len(body["data"]) == 2
    assert list(body["data"][0]) == [*views.SERVER_FIELDS, "avail_slots"]
    first = body["data"][0]  # priority 3, 9 free slots, before a's 4
    assert first["avail_slots"] == 9 and body["data"][1]["id"] == a["id"]
    assert body["data"][1]["last_health_check"] == "2025-01-01T00:00:00.000001Z"
    assert body["data"][1]["last_active"] == "1999-12-31T18:59:59Z"
    assert body["data"][1]["service_types"] == ["social", "entity"]
