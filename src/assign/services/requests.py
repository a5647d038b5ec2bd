"""Use cases of requests (campaigns): create, list, completable, counts, status, connect, complete."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db import views
from assign.db.repositories import archive, locks
from assign.db.repositories import links as links_repo
from assign.db.repositories import requests as repo
from assign.db.repositories import servers as servers_repo
from assign.db.tables import links, servers
from assign.domain.states import (
    ACTIVE,
    CANCELED_ON_CLOSE,
    REQUEST_FINAL,
    LinkStatus,
    RequestStatus,
    is_closed,
    request_timestamps,
)
from assign.errors import NotFound, existing
from assign.services import reads
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
    started, completed, _ = request_timestamps(row_values["status"])
    if started:
        row_values["started_at"] = now
    if completed:
        row_values["completed_at"] = now
    row = await ctx.db.run(lambda conn: repo.insert(conn, row_values))
    return views.request(row)


async def get_request(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        row = await repo.get(conn, request_id)
    return views.request(existing(row, "Request not found"))


list_requests = reads.listing(repo.list_requests, views.request)
list_completable = reads.listing(repo.list_completable, views.request)


async def count_links(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """Counts of a request's links by status, with profile and post counts."""
    async with ctx.db.read(snapshot=True) as conn:
        if await repo.get(conn, request_id) is None:
            raise NotFound("Request not found")
        by_status, urls = await links_repo.count_by_status(conn, request_id)
        # a request's links include those moved to the archive (services.retention)
        archived_by_status, archived_urls = await archive.archived_counts(conn, request_id)
    totals: dict[str, int] = {}
    for status, n in [*by_status, *archived_by_status]:
        totals[status] = totals.get(status, 0) + int(n)
    counts = [{"status": s, "count": n} for s, n in sorted(totals.items()) if n]
    return {
        "request_id": request_id,
        "counts": counts,
        "total": sum(c["count"] for c in counts),
        "profile_count": int(urls[0]) + int(archived_urls[0]),
        "post_count": int(urls[1]) + int(archived_urls[1]),
    }


async def set_status(ctx: Context, *, request_id: uuid.UUID, status: str) -> dict[str, Any]:
    """Operator override: any status, timestamps set per the state table; closing cancels the
    links nobody works on yet, reopening clears ``completed_at``."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        await _lock_links(conn, request_id, closing=is_closed(status), reprioritizing=False)
        if await repo.get(conn, request_id, lock=True) is None:
            raise NotFound("Request not found")
        row = await _enter_status(conn, request_id, status, now)
        return views.request(row)

    answer = await ctx.db.run(work)
    count_finished(status)
    return answer


async def _lock_links(
    conn: AsyncConnection, request_id: uuid.UUID, *, closing: bool, reprioritizing: bool
) -> None:
    """Before the request row (lock order: links, servers, requests): the links a change of the
    request moves — closing: those it cancels, and the failed ones (so that a retry racing it
    waits, or went first); a new priority: those that carry it — and the servers of queued ones."""
    statuses: set[str] = set()
    if closing:
        statuses |= CANCELED_ON_CLOSE | {LinkStatus.FAILED}
    if reprioritizing:
        statuses |= ACTIVE | {LinkStatus.FAILED}
    if not statuses:
        return
    held = await locks.lock_where(
        conn, links, repo.of_request(request_id, statuses), columns=("server_id", "status")
    )
    queued = [r.server_id for r in held if r.status == LinkStatus.QUEUED]
    await locks.lock_ids(conn, servers, queued)


async def _enter_status(conn: AsyncConnection, request_id: uuid.UUID, status: str, now: Any) -> Any:
    """The request (locked) enters ``status``; closing it cancels its links nobody works on yet
    (pending, queued, connect), with their slots freed."""
    if is_closed(status):
        canceled = await links_repo.cancel_where(conn, repo.not_started(request_id), now)
        await servers_repo.add_tasks(conn, links_repo.in_flight_deltas(canceled))
    return await repo.set_status(conn, request_id, status, now)


async def connect_in(
    conn: AsyncConnection, request_id: uuid.UUID, now: Any, *, lock_request: bool = False
) -> tuple[int, int]:
    """The connect step inside a transaction: (links moved to connect, links canceled).

    Every completed create-phase link with a profile, on a server that still exists, moves to
    ``connect``; every other create-phase link not canceled yet is canceled. Locks its links,
    then their servers (a deletion of one waits, or went first), then (``lock_request``) the
    request."""
    held = await locks.lock_where(
        conn, links, repo.create_phase(request_id), columns=("server_id",)
    )
    live = await locks.lock_ids(conn, servers, [r.server_id for r in held], key_share=True)
    if lock_request:
        await repo.get(conn, request_id, lock=True)
    canceled = await links_repo.cancel_where(conn, repo.not_connectable(request_id, live), now)
    await servers_repo.add_tasks(conn, links_repo.in_flight_deltas(canceled))
    connected = await repo.move_to_connect(conn, request_id, live, now)
    return connected, len(canceled)


async def connect(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """Request -> connecting; profiled links -> connect; the other create-phase links -> canceled."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        if await repo.get(conn, request_id) is None:
            raise NotFound("Request not found")
        connected, canceled = await connect_in(conn, request_id, now, lock_request=True)
        row = await repo.get(conn, request_id)
        if row is not None and row.status != RequestStatus.CONNECTING:
            await repo.set_status(conn, request_id, RequestStatus.CONNECTING, now)
        return {"updated": True, "links_connect": connected, "links_canceled": canceled}

    return await ctx.db.run(work)


async def complete(ctx: Context, *, request_id: uuid.UUID) -> dict[str, Any]:
    """Request -> completed; links nobody has started -> canceled (slots freed)."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        await _lock_links(conn, request_id, closing=True, reprioritizing=False)
        if await repo.get(conn, request_id, lock=True) is None:
            raise NotFound("Request not found")
        await _enter_status(conn, request_id, RequestStatus.COMPLETED, now)
        return {"updated": True}

    answer = await ctx.db.run(work)
    count_finished(RequestStatus.COMPLETED)
    return answer


async def update_request(
    ctx: Context, *, request_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Admin changes; a new priority is copied onto the request's unfinished links; a status
    goes through the same rules as ``PUT /requests/:id/status``."""
    now = ctx.clock.now()
    status = changes.pop("status", None)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        closing = status is not None and is_closed(status)
        await _lock_links(conn, request_id, closing=closing, reprioritizing="priority" in changes)
        row = await repo.get(conn, request_id, lock=True)
        if row is None:
            raise NotFound("Request not found")
        if changes:
            row = await repo.update(conn, request_id, {**changes, "updated_at": now})
            if "priority" in changes:
                await repo.set_link_priority(conn, request_id, changes["priority"], now)
        if status is not None:
            row = await _enter_status(conn, request_id, status, now)
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
