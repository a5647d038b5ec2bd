"""What the console's pages show, each page one read (a snapshot where it reads several tables).

Counts of links come from what the transitions maintain (``link_counts`` and the per-minute
``throughput``, kept by the database's triggers; see ``services.history``), never from counting
the links table per view; requests' ``eta`` is the one the admin API answers (``services.eta``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from assign.db import views
from assign.db.repositories import catalog as catalog_repo
from assign.db.repositories import console as repo
from assign.db.repositories import dispatch as dispatch_repo
from assign.db.repositories import history as history_repo
from assign.db.repositories import requests as requests_repo
from assign.db.repositories import servers as servers_repo
from assign.db.tables import requests, servers
from assign.domain.ratelimit import RateLimit, start_of_day
from assign.errors import NotFound
from assign.services import eta, history
from assign.services.context import Context

#: how many of a server's or request's links its page lists
DETAIL_LINKS = 50


async def overview(ctx: Context) -> dict[str, Any]:
    """Links, servers and requests by status, throughput of the last hour, the last tick."""
    async with ctx.db.read(snapshot=True) as conn:
        tick = await repo.last_tick(conn)
        found: dict[str, Any] = {
            "links": await history_repo.link_totals(conn),
            "servers": await repo.count_by_status(conn, servers),
            "requests": await repo.count_by_status(conn, requests),
            "leader": None if tick is None else {"holder": tick.holder, "at": tick.ticked_at},
        }
    found["throughput"] = _jsonable(await history.fleet_minutes(ctx, minutes=60))
    return found


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput rows for a page's chart (times as RFC 3339, keys as strings)."""
    return [
        {**r, "minute": r["minute"].strftime("%Y-%m-%dT%H:%M:%SZ")}
        | ({"key": str(r["key"])} if "key" in r else {})
        for r in rows
    ]


async def servers_page(ctx: Context) -> list[dict[str, Any]]:
    """Every server with its completed and failed results of the last hour."""
    async with ctx.db.read() as conn:
        rows = await servers_repo.list_servers(
            conn, statuses=None, inactive_before=None, service=None, limit=10_000
        )
    hour = await history.server_totals(ctx, minutes=60)
    out = []
    for row in rows:
        completed, failed = hour.get(row.id, (0, 0))
        out.append(views.server(row) | {"completed_hour": completed, "failed_hour": failed})
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
        counts = await history_repo.link_counts_of(conn, [r.id for r in page])
        etas = await eta.estimate_all(conn, page, ctx.clock.now(), counts=counts)
    items = [_with_counts(views.request(r), counts.get(r.id, {}), etas[r.id]) for r in page]
    return items, (page[-1].id if len(rows) > limit else None)


def _with_counts(request: dict[str, Any], counts: dict[str, int], when: Any) -> dict[str, Any]:
    return request | {"counts": counts, "total": sum(counts.values()), "eta": when}


async def request_page(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """One request: counts by state, completions over time, its first links."""
    async with ctx.db.read(snapshot=True) as conn:
        row = await requests_repo.get(conn, request_id)
        if row is None:
            raise NotFound("Request not found")
        counts = await history_repo.link_counts_of(conn, [request_id])
        etas = await eta.estimate_all(conn, [row], ctx.clock.now(), counts=counts)
    minutes = await history.throughput(ctx, minutes=60, by="request", key=request_id)
    return {
        "request": _with_counts(views.request(row), counts.get(request_id, {}), etas[row.id]),
        "throughput": _jsonable(minutes),
    }


async def accounts_page(
    ctx: Context, *, group_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
    """A page of posting accounts (never a password) with what the dispatcher counts against
    the daily limit today (completed today and in flight), last post and cooldown left."""
    now = ctx.clock.now()
    async with ctx.db.read(snapshot=True) as conn:
        rows = await repo.accounts_page(conn, group_id=group_id, after=after, limit=limit + 1)
        page = rows[:limit]
        emails = sorted({r.email for r in page})
        limit_of = RateLimit.from_settings(await catalog_repo.get_settings(conn, "rate_limit"))
        cooldown = timedelta(minutes=limit_of.cooldown_minutes)
        used, recent = await dispatch_repo.account_usage(
            conn,
            emails=emails,
            day_start=start_of_day(now, ctx.settings.tz),
            cooldown_since=now - cooldown if cooldown else None,
        )
        posts = await repo.last_posts(conn, emails)
    out = []
    for row in page:
        last = recent.get(row.email)
        left = last + cooldown - now if last is not None else None
        extra = {
            "today": used.get(row.email, 0),
            "max_per_day": limit_of.max_posts_per_day,
            "last_post_at": posts.get(row.email),
            "cooldown_left": left if left is not None and left > timedelta(0) else None,
        }
        out.append(views.account(row) | extra)
    return out, (page[-1].id if len(rows) > limit else None)
