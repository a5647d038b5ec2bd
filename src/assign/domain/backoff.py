"""Retry back-off arithmetic."""

from __future__ import annotations

import random


def jitter(rand: float | None = None) -> float:
    """The jitter factor of a back-off, in [0.5, 1]."""
    return 0.5 + 0.5 * (random.random() if rand is None else rand)


def retry_delay(retry_count: int, *, base: float, cap: float, rand: float | None = None) -> float:
    """Seconds to wait before retry number ``retry_count + 1``.

    ``min(cap, base * 2**retry_count)`` times a jitter factor in [0.5, 1] (the same in SQL
    where a result is applied by one statement: ``db.repositories.tool.report_in_one``).
    """
    return min(cap, base * (2 ** min(retry_count, 62))) * jitter(rand)
