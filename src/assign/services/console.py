"""What the console's pages show, each page one read (a snapshot where it reads several tables).

Counts come from what the transitions maintain or from index ranges bounded by the page, never
from counting the whole links table per view (see the TODO(history) spots in
``db.repositories.console`` until the history tables are in).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from assign.db import views
from assign.db.repositories import catalog as catalog_repo
from assign.db.repositories import console as repo
from assign.db.repositories import requests as requests_repo
from assign.db.repositories import servers as servers_repo
from assign.db.tables import requests, servers
from assign.domain.ratelimit import RateLimit, start_of_day
from assign.errors import NotFound
from assign.services.context import Context

#: how many of a server's or request's links its page lists
DETAIL_LINKS = 50


async def overview(ctx: Context) -> dict[str, Any]:
    """Links, servers and requests by status, throughput of the last hour, the last tick."""
    async with ctx.db.read(snapshot=True) as conn:
        tick = await repo.last_tick(conn)
        return {
            "links": await repo.links_by_status(conn),
            "servers": await repo.count_by_status(conn, servers),
            "requests": await repo.count_by_status(conn, requests),
            # TODO(history): completed and failed per minute, from the throughput table
            "throughput": [],
            "leader": None
            if tick is None
            else {"holder": tick.holder, "ticked_at": tick.ticked_at},
            "now": ctx.clock.now(),
        }


async def servers_page(ctx: Context) -> list[dict[str, Any]]:
    """Every server with its completed and failed results of the last hour."""
    since = ctx.clock.now() - timedelta(hours=1)
    async with ctx.db.read(snapshot=True) as conn:
        rows = await servers_repo.list_servers(
            conn, statuses=None, inactive_before=None, service=None, limit=10_000
        )
        results = await repo.server_results_since(conn, [r.id for r in rows], since)
    out = []
    for row in rows:
        counts = results.get(row.id, {})
        out.append(
            views.server(row)
            | {"completed_hour": counts.get("completed", 0), "failed_hour": counts.get("failed", 0)}
        )
    return out


async def server_page(ctx: Context, *, server_id: uuid.UUID) -> dict[str, Any]:
    """One server and its links in flight."""
    async with ctx.db.read(snapshot=True) as conn:
        row = await servers_repo.get(conn, server_id)
        if row is None:
            raise NotFound("Server not found")
        in_flight = await repo.links_in_flight(conn, server_id, DETAIL_LINKS)
    return {"server": views.server(row), "links": [views.link(r) for r in in_flight]}


async def requests_page(
    ctx: Context,
    *,
    statuses: list[str],
    service_type: str | None,
    name: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """A page of requests with their links counted by state, and the next page's ``after``."""
    async with ctx.db.read(snapshot=True) as conn:
        rows = await repo.requests_page(
            conn,
            statuses=statuses,
            service_type=service_type,
            name=name,
            after=after,
            limit=limit + 1,
        )
        page = rows[:limit]
        counts = await repo.links_by_request_status(conn, [r.id for r in page])
    items = [_with_counts(views.request(r), counts.get(r.id, {})) for r in page]
    return items, (page[-1].id if len(rows) > limit else None)


def _with_counts(request: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    # TODO(history): the request's ``eta`` from the history service
    return request | {"counts": counts, "total": total, "eta": request.get("eta")}


async def request_page(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """One request: counts by state, completions over time, its first links."""
    async with ctx.db.read(snapshot=True) as conn:
        row = await requests_repo.get(conn, request_id)
        if row is None:
            raise NotFound("Request not found")
        counts = await repo.links_by_request_status(conn, [request_id])
    return {
        "request": _with_counts(views.request(row), counts.get(request_id, {})),
        # TODO(history): completions per minute of this request, from the throughput table
        "throughput": [],
    }


async def accounts_page(ctx: Context, *, group_id: uuid.UUID | None) -> list[dict[str, Any]]:
    """Posting accounts (never a password) with today's count, last post and cooldown left."""
    now = ctx.clock.now()
    day_start = start_of_day(now, ctx.settings.tz)
    async with ctx.db.read(snapshot=True) as conn:
        rows = await catalog_repo.list_accounts(conn, group_id=group_id, status=None, limit=1000)
        activity = await repo.account_activity(conn, [r.email for r in rows], day_start)
        limits = await catalog_repo.get_settings(conn, "rate_limit")
    limit = RateLimit.from_settings(limits)
    out = []
    for row in rows:
        today, last_post, last_dispatch = activity.get(row.email, (0, None, None))
        left = None
        if last_dispatch is not None:
            remaining = last_dispatch + timedelta(minutes=limit.cooldown_minutes) - now
            left = remaining if remaining > timedelta(0) else None
        extra = {
            "today": today,
            "max_per_day": limit.max_posts_per_day,
            "last_post_at": last_post,
            "cooldown_left": left,
        }
        out.append(views.account(row) | extra)
    return out
