"""Worker API: GET /links/account-stats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from assign.clock import FrozenClock
from tests.api import worker_calls as calls
from tests.factories import Factory


async def _stats(factory: Factory, **params: Any) -> dict[str, Any]:
    response = await calls.get(factory, "/links/account-stats", **params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_account_stats_requires_email(factory: Factory) -> None:
    for params in ({}, {"email": ""}):
        response = await calls.get(factory, "/links/account-stats", **params)
        assert response.status_code == 400
        body = response.json()
        assert body["success"] is False
        assert body["details"] == [{"field": "email", "message": "is required"}]


async def test_account_stats_counts(factory: Factory, clock: FrozenClock) -> None:
    clock.current = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    server = await factory.server(max_threads=10)
    email = "user@gmail.com"
    r1 = await factory.request()
    r2 = await factory.request()
    yesterday = (await factory.links(r1, 1, email=email))[0]
    clock.current = datetime(2025, 11, 30, 23, 0, tzinfo=UTC)
    await factory.run_link(yesterday, server)
    clock.current = datetime(2025, 12, 1, 9, 30, tzinfo=UTC)
    done = await factory.links(r2, 2, email=email)
    for link in done:
        await factory.run_link(link, server)
    clock.current = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    pending = await factory.links(r2, 3, email=email)
    assert (await factory.assign(pending[0]["id"], server)).status_code == 200
    assert (await factory.assign(pending[1]["id"], server)).status_code == 200
    await factory.claim(server, limit=1)  # one running, one queued, one pending
    failed = (await factory.links(r1, 1, email=email))[0]
    await factory.run_link(failed, server, status="failed")
    await factory.links(r1, 2, email="someone@else.com")

    assert await _stats(factory, email=email) == {
        "success": True,
        "email": email,
        "pending_count": 3,
        "today_count": 2,
        "total_completed": 3,
        "last_post_at": "2025-12-01T09:30:00Z",
        "request_pending": 0,
        "request_completed": 0,
    }
    stats = await _stats(factory, email=email, request_id=r2["id"])
    assert (stats["request_pending"], stats["request_completed"]) == (3, 2)
    stats = await _stats(factory, email=email, request_id=r1["id"])
    assert (stats["request_pending"], stats["request_completed"]) == (0, 1)
    assert await _stats(factory, email="nobody@example.com") == {
        "success": True,
        "email": "nobody@example.com",
        "pending_count": 0,
        "today_count": 0,
        "total_completed": 0,
        "last_post_at": None,
        "request_pending": 0,
        "request_completed": 0,
    }


async def _posts_at_16_30_and_18_00_utc(factory: Factory, clock: FrozenClock) -> None:
    """Two posts of the account a@b.c on 2025-12-01, at 16:30 and 18:00 UTC."""
    server = await factory.server(max_threads=10)
    request = await factory.request()
    before, after = await factory.links(request, 2, email="a@b.c")
    clock.current = datetime(2025, 12, 1, 16, 30, tzinfo=UTC)
    await factory.run_link(before, server)
    clock.current = datetime(2025, 12, 1, 18, 0, tzinfo=UTC)
    await factory.run_link(after, server)


@pytest.mark.parametrize("settings_overrides", [{"timezone": "Asia/Ho_Chi_Minh"}])
async def test_account_stats_today_uses_assign_timezone(
    factory: Factory, clock: FrozenClock
) -> None:
    # local midnight of 2025-12-02 in UTC+7 is 2025-12-01T17:00Z
    await _posts_at_16_30_and_18_00_utc(factory, clock)
    clock.current = datetime(2025, 12, 1, 20, 0, tzinfo=UTC)
    stats = await _stats(factory, email="a@b.c")
    assert (stats["today_count"], stats["total_completed"]) == (1, 2)
    assert stats["last_post_at"] == "2025-12-01T18:00:00Z"


async def test_account_stats_today_in_utc_by_default(factory: Factory, clock: FrozenClock) -> None:
    await _posts_at_16_30_and_18_00_utc(factory, clock)
    clock.current = datetime(2025, 12, 2, 0, 30, tzinfo=UTC)
    assert (await _stats(factory, email="a@b.c"))["today_count"] == 0
    clock.current = datetime(2025, 12, 1, 23, 59, tzinfo=UTC)
    assert (await _stats(factory, email="a@b.c"))["today_count"] == 2
