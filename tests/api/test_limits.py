"""Request limits: body cap (413), per-key rate limit (429 with Retry-After), batch caps."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import WORKER, Factory


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_body_mb": 0.01, "rate_limit_per_minute": 5}  # about 10 KB bodies


async def test_body_over_the_cap_is_413_with_the_envelope(factory: Factory) -> None:
    request = await factory.request()
    links = [
        {"request_id": request["id"], "service_type": "entity", "about": "x" * 200}
        for _ in range(100)
    ]
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": links}, headers=factory.worker
    )
    assert response.status_code == 413
    assert response.json() == {"success": False, "error": "Request body too large"}


async def test_streamed_body_over_the_cap_is_413(factory: Factory) -> None:
    async def chunks():  # no Content-Length: the cap is enforced as the body arrives
        yield b'{"links": ['
        for _ in range(200):
            yield b'{"request_id": "00000000-0000-4000-8000-000000000000", "service_type": "entity"},'
        yield b"{}]}"

    response = await factory.client.post(
        f"{WORKER}/links/bulk",
        content=chunks(),
        headers={**factory.worker, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["success"] is False


async def test_rate_limit_per_key(factory: Factory) -> None:
    statuses = []
    for _ in range(8):
        response = await factory.client.get(f"{WORKER}/servers", headers=factory.worker)
        statuses.append(response.status_code)
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses
    limited = await factory.client.get(f"{WORKER}/servers", headers=factory.worker)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["success"] is False
    # another key has its own budget
    assert (
        await factory.client.get("/api/v1/admin/servers", headers=factory.admin)
    ).status_code == 200
