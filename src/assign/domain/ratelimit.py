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
        if last_dispatch is not None and now - last_dispatch < timedelta(
            minutes=limit.cooldown_minutes
        ):
            return 0
        return 1
    return room
