"""Idempotency-Key on the creating POSTs: one effect, the first answer replayed, 409 on a new body."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.factories import ADMIN, WORKER, Factory


def _bulk(request: dict[str, Any], n: int, tag: str) -> dict[str, Any]:
    return {
        "links": [
            {
                "request_id": request["id"],
                "service_type": "entity",
                "site_name": tag,
                "password": "pw",
            }
            for _ in range(n)
        ]
    }


async def _count(factory: Factory, request: dict[str, Any]) -> int:
    response = await factory.client.get(
        f"{WORKER}/requests/{request['id']}/links/count", headers=factory.worker
    )
    return response.json()["total"]  # type: ignore[no-any-return]


async def test_replayed_bulk_create_creates_once(factory: Factory) -> None:
    request = await factory.request()
    headers = {**factory.worker, "Idempotency-Key": "batch-1"}
    first = await factory.client.post(
        f"{WORKER}/links/bulk", json=_bulk(request, 5, "a"), headers=headers
    )
    again = await factory.client.post(
        f"{WORKER}/links/bulk", json=_bulk(request, 5, "a"), headers=headers
    )
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"success": True, "created": 5}
    assert await _count(factory, request) == 5


async def test_same_key_with_another_body_is_a_conflict(factory: Factory) -> None:
    request = await factory.request()
    headers = {**factory.worker, "Idempotency-Key": "batch-2"}
    assert (
        await factory.client.post(
            f"{WORKER}/links/bulk", json=_bulk(request, 2, "a"), headers=headers
        )
    ).status_code == 200
    other = await factory.client.post(
        f"{WORKER}/links/bulk", json=_bulk(request, 3, "b"), headers=headers
    )
    assert other.status_code == 409
    assert "different request body" in other.json()["error"]
    assert await _count(factory, request) == 2


async def test_concurrent_replays_create_once(factory: Factory) -> None:
    request = await factory.request()
    headers = {**factory.worker, "Idempotency-Key": "batch-3"}
    answers = await asyncio.gather(
        *(
            factory.client.post(
                f"{WORKER}/links/bulk", json=_bulk(request, 4, "c"), headers=headers
            )
            for _ in range(5)
        )
    )
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == {"success": True, "created": 4} for a in answers)
    assert await _count(factory, request) == 4


async def test_failed_create_does_not_use_up_the_key(factory: Factory) -> None:
    request = await factory.request()
    headers = {**factory.worker, "Idempotency-Key": "batch-4"}
    bad = {
        "links": [{"request_id": "00000000-0000-4000-8000-000000000000", "service_type": "entity"}]
    }
    assert (
        await factory.client.post(f"{WORKER}/links/bulk", json=bad, headers=headers)
    ).status_code == 400
    # a 4xx stores nothing: the key is still free for a corrected body
    good = await factory.client.post(
        f"{WORKER}/links/bulk", json=_bulk(request, 2, "e"), headers=headers
    )
    assert good.status_code == 200 and good.json()["created"] == 2
    assert await _count(factory, request) == 2


async def test_keys_are_per_caller_and_admin_creates_replay(factory: Factory) -> None:
    headers = {**factory.admin, "Idempotency-Key": "server-1"}
    body = {"name": "replayed", "service": "tool"}
    first = await factory.client.post(f"{ADMIN}/servers", json=body, headers=headers)
    again = await factory.client.post(f"{ADMIN}/servers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()  # the same server and the same (only) key
    listed = await factory.client.get(f"{ADMIN}/servers", headers=factory.admin)
    assert [s["name"] for s in listed.json()["data"]].count("replayed") == 1

    request = await factory.request()
    other_caller = {**factory.worker, "Idempotency-Key": "server-1"}
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json=_bulk(request, 1, "d"), headers=other_caller
    )
    assert response.status_code == 200 and response.json()["created"] == 1
