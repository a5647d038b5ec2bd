"""A request's expected completion time. No I/O.

``rate`` = the request's completions per minute over the last ``WINDOW_MINUTES`` (from the
throughput history), lowered to what its posting accounts may do under the rate limit; the ETA
is ``now + remaining / rate``. See docs/behaviour.md ("ETA").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from assign.domain.ratelimit import RateLimit
from assign.domain.states import ACTIVE, LinkStatus

#: the recent completion rate is measured over this many minutes
WINDOW_MINUTES = 15
#: links still to be done of the request (any of them, in the table's order) looked at to see
#: which accounts they use
SAMPLE = 200
#: links still to be done: active ones, and failed ones (most are retried)
REMAINING: frozenset[str] = frozenset({*ACTIVE, LinkStatus.FAILED})


@dataclass(frozen=True)
class Sample:
    """Up to ``SAMPLE`` links of the request still to be done: how many, how many have a
    posting account, and how many accounts they use."""

    links: int = 0
    with_email: int = 0
    accounts: int = 0


def account_rate(limit: RateLimit) -> float:
    """Most links per minute one account may get: one per cooldown, a day's limit per day."""
    per_day = limit.max_posts_per_day / (24 * 60)
    if limit.cooldown_minutes > 0:
        return min(per_day, 1 / limit.cooldown_minutes)
    return per_day


def ceiling(sample: Sample, limit: RateLimit) -> float:
    """Links per minute the rate limit lets the request reach (inf when its links use no
    account): its accounts' combined rate, spread over the share of links they hold."""
    if sample.with_email == 0 or sample.links == 0:
        return math.inf
    share = sample.with_email / sample.links
    return sample.accounts * account_rate(limit) / share


def estimate(
    *,
    remaining: int,
    completed_recently: int,
    sample: Sample,
    limit: RateLimit,
    now: datetime,
) -> datetime | None:
    """When the request's ``remaining`` links should be done, or None when nothing completed
    in the window (no rate to go by) or the rate limit allows nothing."""
    if remaining <= 0:
        return now
    rate = min(completed_recently / WINDOW_MINUTES, ceiling(sample, limit))
    if rate <= 0:
        return None
    minutes = remaining / rate
    if minutes > 366 * 24 * 60:
        return None  # further than a year: no meaningful date
    return now + timedelta(minutes=minutes)
