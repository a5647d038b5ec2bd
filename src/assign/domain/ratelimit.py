"""Per posting account pacing: how many links of one account may be dispatched now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULTS = {"max_posts_per_day": 50, "cooldown_minutes": 5}


@dataclass(frozen=True)
class RateLimit:
    max_posts_per_day: int
    cooldown_minutes: float

    @classmethod
    def from_settings(cls, values: dict[str, str]) -> RateLimit:
        """Settings that are missing or not numbers fall back to the shipped defaults."""

        def number(key: str) -> float:
            try:
                parsed = float(values.get(key, ""))
            except ValueError:
                return DEFAULTS[key]
            return parsed if parsed >= 0 else DEFAULTS[key]

        return cls(int(number("max_posts_per_day")), number("cooldown_minutes"))


def start_of_day(now: datetime, tz: ZoneInfo) -> datetime:
    """Midnight of ``now``'s day in ``tz``, as an aware datetime."""
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


def end_of_day(now: datetime, tz: ZoneInfo) -> datetime:
    """The next midnight after ``now`` in ``tz`` (when a day's count starts again)."""
    local = now.astimezone(tz)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)


def cooldown_ends(limit: RateLimit, last_dispatch: datetime | None) -> datetime | None:
    """When the account's cooldown since its last dispatch runs out (None: no cooldown)."""
    if limit.cooldown_minutes <= 0 or last_dispatch is None:
        return None
    return last_dispatch + timedelta(minutes=limit.cooldown_minutes)


@dataclass(frozen=True)
class Hold:
    """What keeps an account from getting a link now, and until when."""

    reason: str  # "daily_limit" | "cooldown"
    until: datetime


def hold(
    limit: RateLimit,
    *,
    done_today: int,
    in_flight: int,
    last_dispatch: datetime | None,
    now: datetime,
    tz: ZoneInfo,
) -> Hold | None:
    """Why :func:`allowance` is 0 for this account (the daily limit first), or None."""
    if limit.max_posts_per_day - done_today - in_flight <= 0:
        return Hold("daily_limit", end_of_day(now, tz))
    ends = cooldown_ends(limit, last_dispatch)
    if ends is not None and now < ends:
        return Hold("cooldown", ends)
    return None


def allowance(
    limit: RateLimit,
    *,
    done_today: int,
    in_flight: int,
    last_dispatch: datetime | None,
    now: datetime,
) -> int:
    """How many links of one account may be dispatched in this tick (0, 1 or more).

    With a cooldown, at most one link per tick and only once the cooldown since the
    account's last dispatch has run out.
    """
    room = limit.max_posts_per_day - done_today - in_flight
    if room <= 0:
        return 0
    if limit.cooldown_minutes > 0:
        ends = cooldown_ends(limit, last_dispatch)
        if ends is not None and now < ends:
            return 0
        return 1
    return room
