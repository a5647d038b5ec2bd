"""Per-account pacing arithmetic: settings parsing, the day boundary, the allowance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from assign.domain.ratelimit import RateLimit, allowance, start_of_day


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"max_posts_per_day": "50", "cooldown_minutes": "5"}, RateLimit(50, 5.0)),
        ({"max_posts_per_day": "7", "cooldown_minutes": "0.5"}, RateLimit(7, 0.5)),
        ({"max_posts_per_day": "12.9", "cooldown_minutes": "0"}, RateLimit(12, 0.0)),
        ({}, RateLimit(50, 5)),
        ({"max_posts_per_day": "many", "cooldown_minutes": ""}, RateLimit(50, 5)),
        ({"max_posts_per_day": "-1", "cooldown_minutes": "-3"}, RateLimit(50, 5)),
        ({"max_posts_per_day": "0"}, RateLimit(0, 5)),
    ],
)
def test_from_settings(values: dict[str, str], expected: RateLimit) -> None:
    assert RateLimit.from_settings(values) == expected


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        ("2025-12-01T10:00:00+00:00", "UTC", "2025-12-01T00:00:00+00:00"),
        ("2025-12-01T00:00:00+00:00", "UTC", "2025-12-01T00:00:00+00:00"),
        # 20:00Z is 03:00 the next day in UTC+7
        ("2025-12-01T20:00:00+00:00", "Asia/Ho_Chi_Minh", "2025-12-01T17:00:00+00:00"),
        ("2025-12-01T16:59:59+00:00", "Asia/Ho_Chi_Minh", "2025-11-30T17:00:00+00:00"),
        # 02:00Z is still the previous evening in New York
        ("2025-12-01T02:00:00+00:00", "America/New_York", "2025-11-30T05:00:00+00:00"),
        # daylight saving: midnight is UTC-4 in summer
        ("2025-07-01T12:00:00+00:00", "America/New_York", "2025-07-01T04:00:00+00:00"),
    ],
)
def test_start_of_day(now: str, tz: str, expected: str) -> None:
    got = start_of_day(datetime.fromisoformat(now), ZoneInfo(tz))
    assert got.tzinfo is not None
    assert got == datetime.fromisoformat(expected)
    assert got <= datetime.fromisoformat(now) < got + timedelta(hours=25)


NOW = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("limit", "done", "in_flight", "last", "expected"),
    [
        (RateLimit(10, 0), 0, 0, None, 10),
        (RateLimit(10, 0), 4, 3, None, 3),
        (RateLimit(10, 0), 7, 3, None, 0),
        (RateLimit(10, 0), 9, 3, None, 0),
        (RateLimit(0, 0), 0, 0, None, 0),
        # with a cooldown: one link a tick, and only once it ran out
        (RateLimit(10, 5), 0, 0, None, 1),
        (RateLimit(10, 5), 0, 0, NOW - timedelta(minutes=4, seconds=59), 0),
        (RateLimit(10, 5), 0, 0, NOW - timedelta(minutes=5), 1),
        (RateLimit(10, 5), 9, 1, None, 0),
        (RateLimit(10, 0.5), 0, 0, NOW - timedelta(seconds=31), 1),
    ],
)
def test_allowance(
    limit: RateLimit, done: int, in_flight: int, last: datetime | None, expected: int
) -> None:
    got = allowance(limit, done_today=done, in_flight=in_flight, last_dispatch=last, now=NOW)
    assert got == expected
