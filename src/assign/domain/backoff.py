"""Retry back-off arithmetic."""

from __future__ import annotations

import random


def retry_delay(retry_count: int, *, base: float, cap: float, rand: float | None = None) -> float:
    """Seconds to wait before retry number ``retry_count + 1``.

    ``min(cap, base * 2**retry_count)`` times a jitter factor in [0.5, 1].
    """
    factor = 0.5 + 0.5 * (random.random() if rand is None else rand)
    return min(cap, base * (2 ** min(retry_count, 62))) * factor
