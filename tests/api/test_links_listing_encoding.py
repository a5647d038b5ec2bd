"""GET /links on PostgreSQL has the database encode the JSON (repositories.links.list_links_json).

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
from assign.db.repositories import links as repo
from assign.db.tables import links
from tests.factories import Factory

pytestmark = pytest.mark.postgres

ODD_TEXT = 'quote " back \\ slash / nl \n tab \t ctl \x01 \x1f del \x7f ü 😀 \u2028 end'


def _pairs(raw: bytes) -> Any:
    return json.loads(raw, object_pairs_hook=list)


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
            rows = await repo.list_links(conn, **args)
            expected = dumps(
                {"success": True, "data": [views.link(r) for r in rows], "total": len(rows)}
            )
            answered = listing(await repo.list_links_json(conn, **args)).body
            assert _pairs(answered) == _pairs(expected), case
    # through the API as well
    response = await factory.client.get(
        "/api/v1/worker/links", params={"status": "pending,queued"}, headers=factory.worker
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["total"] == len(body["data"]) == 7
    assert list(body["data"][0]) == list(views.LINK_FIELDS)
