"""Use cases of the tool API: a tool server claims its work and reports results."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db import views
from assign.db.repositories import links as links_repo
from assign.db.repositories import servers as servers_repo
from assign.domain.backoff import retry_delay
from assign.domain.states import LinkStatus, Phase
from assign.errors import Conflict, NotFound
from assign.services import wake
from assign.services.context import Context


async def claim(ctx: Context, *, server_id: uuid.UUID, limit: int) -> list[dict[str, Any]]:
    """Queued links -> running, then connect links -> connecting while slots are free.

    Each claimed link carries its decrypted ``password``: the server is about to use it.
    """
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> list[Any]:
        server = await servers_repo.get(conn, server_id, lock=conn.dialect.name == "postgresql")
        if server is None:
            raise NotFound("Server not found")
        rows = await links_repo.claim_queued(conn, server_id=server_id, limit=limit, now=now)
        free = server.max_threads - server.active_tasks
        more = min(limit - len(rows), free)
        if more > 0:
            connecting = await links_repo.claim_connect(
                conn, server_id=server_id, limit=more, now=now
            )
            await servers_repo.add_tasks(conn, [(server_id, len(connecting))])
            rows.extend(connecting)
        await servers_repo.update(conn, server_id, {"last_active": now})
        return rows

    rows = await ctx.db.run(work)
    metrics.links_claimed.inc(len(rows))
    out = []
    for row in rows:
        item = views.link(row)
        item["password"] = ctx.cipher.decrypt(row.password_enc)
        out.append(item)
    return out


async def report_result(
    ctx: Context,
    *,
    server_id: uuid.UUID,
    link_id: uuid.UUID,
    status: str,
    profile_url: str | None,
    post_url: str | None,
    error: str | None,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    """A running/connecting link of this server -> completed or failed; its slot is freed."""
    now = ctx.clock.now()
    settings = ctx.settings

    async def work(conn: AsyncConnection) -> Any:
        link = await links_repo.get(conn, link_id)
        if link is None or link.server_id != server_id:
            raise NotFound("Link not found")
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if profile_url is not None:
            values["profile_url"] = profile_url
        if post_url is not None:
            values["post_url"] = post_url
        if details is not None:
            values["details"] = {**(link.details or {}), **details}
        if status == LinkStatus.COMPLETED:
            values["completed_at"] = now
            values["error"] = None
        else:
            values["error"] = error or "failed"
            delay = retry_delay(
                link.retry_count, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
            )
            values["retry_at"] = now + timedelta(seconds=delay)
        row = await links_repo.finish(conn, link_id=link_id, server_id=server_id, values=values)
        if row is None:
            current = await links_repo.get(conn, link_id)
            state = current.status if current is not None else "gone"
            raise Conflict(f"Link is {state}; only a running or connecting link takes a result")
        # the server row (every result of the server passes through it) is taken last, in one
        # statement, so it is held only until the commit
        await servers_repo.end_task(conn, server_id, now)
        await wake.notify(ctx, conn)
        if status == LinkStatus.COMPLETED and row.phase == Phase.CREATE:
            await links_repo.add_created_links(conn, {row.request_id: 1}, now)
        return row

    row = await ctx.db.run(work)
    metrics.link_results.labels(status).inc()
    return views.link(row)
