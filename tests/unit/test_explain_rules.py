"""The order and wording of "why is it waiting" (domain.explain), no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from assign.domain.dispatch import FreeServer
from assign.domain.explain import (
    AHEAD_CAP,
    ServerState,
    held_by_account,
    held_by_fleet,
    in_line,
    not_pending,
)
from assign.domain.ratelimit import Hold, RateLimit, hold

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=5)


def server(
    free: int = 1, status: str = "online", beat: float | None = 1, types: tuple[str, ...] = ()
) -> ServerState:
    seen = None if beat is None else NOW - timedelta(minutes=beat)
    return ServerState(FreeServer(uuid.uuid4(), 0, free, frozenset(types)), status, seen)


@pytest.mark.parametrize(
    ("fleet", "reason"),
    [
        ([], "no_server_for_service_type"),
        ([server(types=("social",))], "no_server_for_service_type"),
        ([server(status="offline")], "no_live_server"),
        ([server(status="maintenance")], "no_live_server"),
        ([server(beat=None)], "no_live_server"),
        ([server(beat=6)], "no_live_server"),
        ([server(free=0), server(beat=None)], "servers_full"),
        ([server(free=0), server(free=2, types=("social",))], "servers_full"),
        ([server(free=0), server(free=1)], None),
    ],
)
def test_fleet_reasons(fleet: list[ServerState], reason: str | None) -> None:
    why = held_by_fleet("entity", fleet, now=NOW, timeout=TIMEOUT)
    assert (why.reason if why else None) == reason


def test_daily_limit_comes_before_cooldown() -> None:
    limit = RateLimit(2, 5)
    found = hold(limit, done_today=1, in_flight=1, last_dispatch=NOW, now=NOW, tz=UTC)
    assert found == Hold("daily_limit", datetime(2026, 12, 2, tzinfo=UTC))
    found = hold(limit, done_today=1, in_flight=0, last_dispatch=NOW, now=NOW, tz=UTC)
    assert found == Hold("cooldown", NOW + timedelta(minutes=5))
    assert hold(limit, done_today=0, in_flight=0, last_dispatch=None, now=NOW, tz=UTC) is None
    why = held_by_account("a@example.com", found)
    assert why is not None and why.until == NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("ahead", "start"),
    [
        (0, "0 links are"),
        (1, "1 link is"),
        (250, "250 links are"),
        (999, "999 links are"),
        (AHEAD_CAP, "1,000 links are"),
        (AHEAD_CAP + 1, "More than 1,000 links are"),
    ],
)
def test_in_line_detail(ahead: int, start: str) -> None:
    assert in_line(ahead).detail.startswith(start)


def test_other_statuses() -> None:
    later = NOW + timedelta(seconds=20)
    common = {"retry_at": later, "request_status": "running", "now": NOW}
    assert (
        not_pending(status="failed", retry_count=0, max_retries=3, **common).reason
        == "retry_backoff"
    )  # type: ignore[arg-type]
    assert not_pending(status="failed", retry_count=3, max_retries=3, **common).reason is None  # type: ignore[arg-type]
    for status in ("queued", "running", "completed", "canceled", "connect", "connecting"):
        assert not_pending(status=status, retry_count=0, max_retries=3, **common).reason is None  # type: ignore[arg-type]
    closed = not_pending(
        status="failed",
        retry_count=0,
        max_retries=3,
        retry_at=later,
        request_status="completed",
        now=NOW,
    )
    assert closed.reason == "request_closed"
