"""The ETA arithmetic (domain.eta), no database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from assign.db.tables import REMAINING_LINKS
from assign.domain.eta import REMAINING, Sample, account_rate, ceiling, estimate
from assign.domain.ratelimit import RateLimit

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("per_day", "cooldown", "rate"),
    [(1440, 0, 1.0), (1440, 2, 0.5), (144, 1, 0.1), (0, 5, 0.0)],
)
def test_account_rate(per_day: int, cooldown: float, rate: float) -> None:
    assert account_rate(RateLimit(per_day, cooldown)) == pytest.approx(rate)


def test_ceiling_spreads_over_the_accounts_share() -> None:
    limit = RateLimit(1440, 0)  # 1 a minute an account
    assert ceiling(Sample(100, 0, 0), limit) == math.inf
    assert ceiling(Sample(100, 100, 4), limit) == pytest.approx(4)
    assert ceiling(Sample(100, 50, 4), limit) == pytest.approx(8)


@pytest.mark.parametrize(
    ("remaining", "recent", "sample", "minutes"),
    [
        (0, 0, Sample(), 0),
        (30, 15, Sample(), 30),  # 1 a minute
        (30, 150, Sample(10, 10, 1), 30),  # the account allows 1 a minute
        (30, 0, Sample(), None),
    ],
)
def test_estimate(remaining: int, recent: int, sample: Sample, minutes: float | None) -> None:
    got = estimate(
        remaining=remaining,
        completed_recently=recent,
        sample=sample,
        limit=RateLimit(1440, 0),
        now=NOW,
    )
    assert got == (None if minutes is None else NOW + timedelta(minutes=minutes))


def test_no_allowance_no_estimate() -> None:
    got = estimate(
        remaining=5,
        completed_recently=15,
        sample=Sample(5, 5, 1),
        limit=RateLimit(0, 0),
        now=NOW,
    )
    assert got is None


def test_index_of_links_left_holds_the_statuses_left() -> None:
    """The ETA's sample reads ``ix_links_remaining_request_id``: its predicate is REMAINING,
    sorted as the query writes it."""
    listed = ", ".join(f"'{status}'" for status in sorted(REMAINING))
    assert f"status IN ({listed})" == REMAINING_LINKS
