"""Use case "why is this link waiting", judged by the dispatcher's own rules."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import catalog
from assign.db.repositories import dispatch as dispatch_repo
from assign.db.repositories import explain as repo
from assign.domain import explain as rules
from assign.domain.dispatch import FreeServer
from assign.domain.ratelimit import RateLimit, hold, start_of_day
from assign.domain.states import LinkStatus
from assign.errors import NotFound
from assign.services.context import Context


async def explain_link(ctx: Context, *, link_id: uuid.UUID) -> dict[str, Any]:
    """{status, reason, until?, detail} of one link: for a pending one the first rule of §11's
    order that holds it (request_closed, no_server_for_service_type, no_live_server,
    servers_full, daily_limit, cooldown, in_line); retry_backoff for a retryable failure."""
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        link = await repo.link_to_explain(conn, link_id)
        if link is None:
            raise NotFound("Link not found")
        request_status = link.request_status or "canceled"  # a request gone: nothing to do
        if link.status != LinkStatus.PENDING:
            why = rules.not_pending(
                status=link.status,
                retry_count=link.retry_count,
                max_retries=link.max_retries,
                retry_at=link.retry_at,
                request_status=request_status,
                now=now,
            )
        else:
            why = await _pending(ctx, conn, link, request_status, now)
    return why.as_dict(link.status)


async def _pending(
    ctx: Context, conn: AsyncConnection, link: Any, request_status: str, now: Any
) -> rules.Why:
    if rules.is_request_closed(request_status):
        return rules.request_closed(request_status)
    fleet = [
        rules.ServerState(
            FreeServer(r.id, r.priority, r.free, frozenset(r.service_types or ())),
            r.status,
            r.last_health_check,
        )
        for r in await repo.tool_servers(conn)
    ]
    timeout = timedelta(minutes=ctx.settings.server_timeout_minutes)
    why = rules.held_by_fleet(link.service_type, fleet, now=now, timeout=timeout)
    if why is None and link.email is not None:
        why = rules.held_by_account(link.email, await _account_hold(ctx, conn, link.email, now))
    if why is not None:
        return why
    ahead = await repo.ahead_in_line(
        conn,
        priority=link.priority,
        created_at=link.created_at,
        link_id=link.id,
        cap=rules.AHEAD_CAP + 1,  # one more: "more than" the cap only when it is
    )
    return rules.in_line(ahead)


async def _account_hold(ctx: Context, conn: AsyncConnection, email: str, now: Any) -> Any:
    """The account's daily limit or cooldown, from the dispatcher's own usage query."""
    limit = RateLimit.from_settings(await catalog.get_settings(conn, "rate_limit"))
    cooldown_since = (
        now - timedelta(minutes=limit.cooldown_minutes) if limit.cooldown_minutes > 0 else None
    )
    used, recent = await dispatch_repo.account_usage(
        conn,
        emails=[email],
        day_start=start_of_day(now, ctx.settings.tz),
        cooldown_since=cooldown_since,
    )
    return hold(
        limit,
        done_today=0,  # account_usage counts today's completions with the links in flight
        in_flight=used.get(email, 0),
        last_dispatch=recent.get(email),
        now=now,
        tz=ctx.settings.tz,
    )
