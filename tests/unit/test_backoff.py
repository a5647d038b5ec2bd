"""Retry back-off: ``min(cap, base * 2**retry_count)`` times a jitter factor in [0.5, 1]."""

from __future__ import annotations

import pytest

from assign.domain.backoff import retry_delay


@pytest.mark.parametrize(
    ("retry_count", "rand", "expected"),
    [
        (0, 0.0, 15.0),
        (0, 1.0, 30.0),
        (0, 0.5, 22.5),
        (1, 1.0, 60.0),
        (3, 1.0, 240.0),
        (3, 0.0, 120.0),
        (7, 1.0, 3600.0),  # 3840 capped
        (7, 0.0, 1800.0),
        (50, 1.0, 3600.0),
        (10_000, 0.0, 1800.0),  # no overflow for absurd counts
    ],
)
def test_delay(retry_count: int, rand: float, expected: float) -> None:
    assert retry_delay(retry_count, base=30, cap=3600, rand=rand) == pytest.approx(expected)


def test_jitter_stays_within_half_and_full() -> None:
    delays = {retry_delay(2, base=10, cap=1000) for _ in range(200)}
    assert all(20 <= d <= 40 for d in delays)
    assert len(delays) > 100  # actually random


def test_fractions_and_zero() -> None:
    assert retry_delay(1, base=0.5, cap=10, rand=1.0) == pytest.approx(1.0)
    assert retry_delay(5, base=0, cap=3600) == 0
    assert retry_delay(5, base=30, cap=0) == 0


def test_grows_with_retry_count_until_cap() -> None:
    values = [retry_delay(n, base=1, cap=100, rand=1.0) for n in range(10)]
    assert values == [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]
