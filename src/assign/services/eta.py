"""Admin answers of requests, each open one with its ``eta`` (see ``domain.eta``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import views
from assign.db.repositories import catalog
from assign.db.repositories import history as history_repo
from assign.db.repositories import requests as repo
from assign.domain import eta as rules
from assign.domain.ratelimit import RateLimit
from assign.domain.states import REQUEST_FINAL
from assign.errors import NotFound
from assign.services import requests as requests_service
from assign.services.context import Context
from assign.services.history import minute_of


async def create_request(ctx: Context, *, values: dict[str, Any]) -> dict[str, Any]:
    """A new request, as the admin answers show it (no link yet: ``eta`` null)."""
    return {**await requests_service.create_request(ctx, values=values), "eta": None}


async def update_request(
    ctx: Context, *, request_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """The admin change of a request, answered with the request's ``eta`` after it."""
    await requests_service.update_request(ctx, request_id=request_id, changes=changes)
    return await get_request(ctx, request_id=request_id)


async def get_request(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """The request with its ``eta``."""
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        row = await repo.get(conn, request_id)
        if row is None:
            raise NotFound("Request not found")
        etas = await estimate_all(conn, [row], now)
    return {**views.request(row), "eta": etas[row.id]}


async def list_requests(
    ctx: Context, *, statuses: list[str], service_type: str | None, limit: int
) -> list[dict[str, Any]]:
    """Requests as the admin list answers them, each with its ``eta``."""
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        rows = await repo.list_requests(
            conn, statuses=statuses, service_type=service_type, type_request=None, limit=limit
        )
        etas = await estimate_all(conn, rows, now)
    return [{**views.request(r), "eta": etas[r.id]} for r in rows]


async def estimate_all(
    conn: AsyncConnection,
    rows: Sequence[Any],
    now: datetime,
    *,
    counts: dict[uuid.UUID, dict[str, int]] | None = None,
) -> dict[uuid.UUID, datetime | None]:
    """{request id: eta}; None for closed requests and those with no recent completion.

    A few set-based reads for all ``rows`` at once: the links left from ``link_counts`` (or
    ``counts``, when the caller read them already), the recent completions from the throughput
    history, and the accounts of up to ``SAMPLE`` links left of only those requests whose
    estimate depends on them (something left and something completed lately: otherwise the
    answer is ``now`` or null whatever the accounts)."""
    etas: dict[uuid.UUID, datetime | None] = {r.id: None for r in rows}
    open_ids = [r.id for r in rows if r.status not in REQUEST_FINAL]
    if not open_ids:
        return etas
    if counts is None or any(request_id not in counts for request_id in open_ids):
        counts = await history_repo.link_counts_of(conn, open_ids)
    since = minute_of(now) - timedelta(minutes=rules.WINDOW_MINUTES - 1)
    recent = await history_repo.completed_since(conn, kind="request", keys=open_ids, since=since)
    limit = RateLimit.from_settings(await catalog.get_settings(conn, "rate_limit"))
    remaining = {
        request_id: sum(n for status, n in counts[request_id].items() if status in rules.REMAINING)
        for request_id in open_ids
    }
    paced = [r for r in open_ids if remaining[r] > 0 and recent.get(r, 0) > 0]
    samples = await history_repo.account_samples(conn, request_ids=paced, size=rules.SAMPLE)
    for request_id in open_ids:
        if not any(counts[request_id].values()):
            continue  # no link yet: nothing to estimate
        etas[request_id] = rules.estimate(
            remaining=remaining[request_id],
            completed_recently=recent.get(request_id, 0),
            sample=rules.Sample(*samples.get(request_id, (0, 0, 0))),
            limit=limit,
            now=now,
        )
    return etas
