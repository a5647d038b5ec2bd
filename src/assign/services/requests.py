"""Use cases of requests (campaigns): create, list, completable, counts, status, connect, complete."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db import views
from assign.db.repositories import links as links_repo
from assign.db.repositories import requests as repo
from assign.db.repositories import servers as servers_repo
from assign.domain.states import REQUEST_FINAL, RequestStatus
from assign.errors import NotFound
from assign.services.context import Context


async def create_request(ctx: Context, *, values: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now()
    row_values = {
        "id": uuid.uuid4(),
        "created_links": 0,
        "status": RequestStatus.PENDING,
        "type_request": "normal",
        "priority": 0,
        **values,
        "created_at": now,
        "updated_at": now,
    }
    started, completed = (
        (row_values["status"] == RequestStatus.RUNNING),
        row_values["status"]
        in (
            RequestStatus.COMPLETED,
            RequestStatus.FAILED,
            RequestStatus.CANCELED,
        ),
    )
    if started:
        row_values["started_at"] = now
    if completed:
        row_values["completed_at"] = now
    async with ctx.db.transaction() as conn:
        row = await repo.insert(conn, row_values)
    return views.request(row)


async def get_request(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        row = await repo.get(conn, request_id)
    if row is None:
        raise NotFound("Request not found")
    return views.request(row)


async def list_requests(
    ctx: Context,
    *,
    statuses: list[str],
    service_type: str | None,
    type_request: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        rows = await repo.list_requests(
            conn,
            statuses=statuses,
            service_type=service_type,
            type_request=type_request,
            limit=limit,
        )
    return [views.request(r) for r in rows]


async def list_completable(
    ctx: Context,
    *,
    statuses: list[str],
    service_type: str | None,
    no_active_links: bool,
    limit: int,
) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        rows = await repo.list_completable(
            conn,
            statuses=statuses,
            service_type=service_type,
            no_active_links=no_active_links,
            limit=limit,
        )
    return [views.request(r) for r in rows]


async def count_links(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """Counts of a request's links by status, with profile and post counts."""
    async with ctx.db.read() as conn:
        if await repo.get(conn, request_id) is None:
            raise NotFound("Request not found")
        by_status, urls = await links_repo.count_by_status(conn, request_id)
    counts = sorted(
        ({"status": s, "count": int(n)} for s, n in by_status), key=lambda c: c["status"]
    )
    return {
        "request_id": request_id,
        "counts": counts,
        "total": sum(c["count"] for c in counts),
        "profile_count": int(urls[0]),
        "post_count": int(urls[1]),
    }


async def set_status(ctx: Context, *, request_id: uuid.UUID, status: str) -> dict[str, Any]:
    """Operator override: any status, timestamps set per the state table."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as conn:
        row = await repo.set_status(conn, request_id, status, now)
    if row is None:
        raise NotFound("Request not found")
    count_finished(status)
    return views.request(row)


async def connect_in(conn: AsyncConnection, request_id: uuid.UUID, now: Any) -> tuple[int, int]:
    """The connect step inside a transaction: (links moved to connect, links canceled)."""
    canceled = await links_repo.cancel_where(conn, repo.without_profile(request_id), now)
    await servers_repo.add_tasks(conn, links_repo.in_flight_deltas(canceled))
    connected = await repo.move_to_connect(conn, request_id, now)
    return connected, len(canceled)


async def connect(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """Request -> connecting; profiled links -> connect; links without a profile -> canceled."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = await repo.get(conn, request_id, lock=True)
        if row is None:
            raise NotFound("Request not found")
        connected, canceled = await connect_in(conn, request_id, now)
        if row.status != RequestStatus.CONNECTING:
            await repo.set_status(conn, request_id, RequestStatus.CONNECTING, now)
        return {"updated": True, "links_connect": connected, "links_canceled": canceled}

    return await ctx.db.run(work)


async def complete(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """Request -> completed; links nobody has started -> canceled (slots freed)."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = await repo.get(conn, request_id, lock=True)
        if row is None:
            raise NotFound("Request not found")
        canceled = await links_repo.cancel_where(conn, repo.not_started(request_id), now)
        await servers_repo.add_tasks(conn, links_repo.in_flight_deltas(canceled))
        await repo.set_status(conn, request_id, RequestStatus.COMPLETED, now)
        return {"updated": True, "links_canceled": len(canceled)}

    answer = await ctx.db.run(work)
    count_finished(RequestStatus.COMPLETED)
    return answer


async def update_request(
    ctx: Context, *, request_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Admin changes; a new priority is copied onto the request's unfinished links."""
    now = ctx.clock.now()
    status = changes.pop("status", None)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = await repo.get(conn, request_id, lock=True)
        if row is None:
            raise NotFound("Request not found")
        if changes:
            row = await repo.update(conn, request_id, {**changes, "updated_at": now})
            if "priority" in changes:
                await repo.set_link_priority(conn, request_id, changes["priority"], now)
        if status is not None:
            row = await repo.set_status(conn, request_id, status, now)
        assert row is not None
        return views.request(row)

    answer = await ctx.db.run(work)
    if status is not None:
        count_finished(status)
    return answer


def count_finished(status: str) -> None:
    """Count a request closed by an API call (the dispatcher counts those it closes)."""
    if status in REQUEST_FINAL:
        metrics.requests_finished.labels(str(status)).inc()
