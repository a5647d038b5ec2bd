"""Which links leave the hot table, and when (pure rules; the SQL is in db/repositories/archive)."""

from __future__ import annotations

from datetime import datetime, timedelta

from assign.domain.states import TERMINAL, LinkStatus

#: a closed request's links in these states change no more (a failed one is not retried)
ARCHIVABLE: frozenset[LinkStatus] = TERMINAL | {LinkStatus.FAILED}


def archive_before(now: datetime, days: float) -> datetime | None:
    """Requests closed, and links last changed, before this are archived; None: keep all."""
    if days <= 0:
        return None
    return now - timedelta(days=days)
