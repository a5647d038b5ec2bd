"""SQL for requests (campaigns): listing, completable, status, connect."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import rules
from assign.db.repositories import by_id
from assign.db.tables import links, requests
from assign.domain.states import (
    ACTIVE,
    CANCELED_ON_CLOSE,
    UNFINISHED,
    LinkStatus,
    Phase,
    request_timestamps,
)

ORDER = (requests.c.priority.desc(), requests.c.created_at, requests.c.id)


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    """The inserted request row."""
    return (await conn.execute(requests.insert().values(**values).returning(requests))).one()


async def get(
    conn: AsyncConnection, request_id: uuid.UUID, *, lock: bool = False, share: bool = False
) -> Row[Any] | None:
    """The request row, or None; ``lock`` / ``share`` take its row lock FOR UPDATE / FOR KEY
    SHARE (PostgreSQL: see ``locks.lock_ids``)."""
    query = sa.select(requests).where(requests.c.id == request_id)
    if lock or share:
        shared = share and not lock
        query = query.with_for_update(read=shared, key_share=shared)
    return (await conn.execute(query)).first()


async def lock_for_links(
    conn: AsyncConnection, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, str]]:
    """{id: (priority, status)} of the requests among ``ids`` that exist, locked ``FOR KEY SHARE``
    in id order (PostgreSQL), so that none closes before the links made for it are committed."""
    found: dict[uuid.UUID, tuple[int, str]] = {}
    unique = sorted(set(ids))
    for start in range(0, len(unique), 1000):
        query = (
            sa.select(requests.c.id, requests.c.priority, requests.c.status)
            .where(requests.c.id.in_(unique[start : start + 1000]))
            .order_by(requests.c.id)
        )
        query = query.with_for_update(read=True, key_share=True)
        found.update({r.id: (r.priority, r.status) for r in await conn.execute(query)})
    return found


async def list_requests(
    conn: AsyncConnection,
    *,
    statuses: Sequence[str],
    service_type: str | None,
    type_request: str | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Requests in ``statuses``, highest priority first, then oldest."""
    query = sa.select(requests).where(requests.c.status.in_(statuses))
    if service_type:
        query = query.where(requests.c.service_type == service_type)
    if type_request:
        query = query.where(requests.c.type_request == type_request)
    return (await conn.execute(query.order_by(*ORDER).limit(limit))).all()


def has_links() -> sa.Exists:
    return sa.exists().where(links.c.request_id == requests.c.id)


def has_active_links(*, count_retryable: bool) -> sa.Exists:
    """A link of the request still to be worked on (``count_retryable``: or failed with retries left)."""
    statuses = sorted(ACTIVE) if count_retryable else sorted(UNFINISHED)
    active: sa.ColumnElement[bool] = links.c.status.in_(statuses)
    if count_retryable:
        active = sa.or_(active, rules.RETRYABLE)
    return sa.exists().where(links.c.request_id == requests.c.id, active)


async def list_completable(
    conn: AsyncConnection,
    *,
    statuses: Sequence[str],
    service_type: str | None,
    no_active_links: bool,
    limit: int,
) -> Sequence[Row[Any]]:
    """Requests with at least one link and none still active, priority order."""
    query = sa.select(requests).where(
        requests.c.status.in_(statuses),
        has_links(),
        ~has_active_links(count_retryable=not no_active_links),
    )
    if service_type:
        query = query.where(requests.c.service_type == service_type)
    return (await conn.execute(query.order_by(*ORDER).limit(limit))).all()


def status_values(status: str, now: datetime) -> dict[str, Any]:
    """Column values for a request entering ``status`` (timestamps per the state table)."""
    sets_started, sets_completed, clears_completed = request_timestamps(status)
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if sets_started:
        values["started_at"] = sa.func.coalesce(requests.c.started_at, now)
    if sets_completed:
        values["completed_at"] = now
    if clears_completed:
        values["completed_at"] = None
    return values


async def set_status(
    conn: AsyncConnection, request_id: uuid.UUID, status: str, now: datetime
) -> Row[Any] | None:
    """The request row after the change, or None when it does not exist."""
    query = (
        requests.update()
        .where(requests.c.id == request_id)
        .values(**status_values(status, now))
        .returning(requests)
    )
    return (await conn.execute(query)).first()


async def update(
    conn: AsyncConnection, request_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any] | None:
    return await by_id.update(conn, requests, request_id, values)


async def move_to_connect(
    conn: AsyncConnection, request_id: uuid.UUID, server_ids: Collection[uuid.UUID], now: datetime
) -> int:
    """Create-phase completed links with a profile, on one of ``server_ids`` -> connect (same
    server, ``retry_count`` 0, ``completed_at`` kept); how many."""
    if not server_ids:
        return 0
    query = (
        links.update()
        .where(connectable(request_id, server_ids))
        .values(
            status=LinkStatus.CONNECT,
            phase=Phase.CONNECT,
            retry_count=0,
            retry_at=None,
            started_at=None,
            error=None,
            updated_at=now,
        )
        .returning(links.c.id)
    )
    return len((await conn.execute(query)).all())


def connectable(request_id: uuid.UUID, server_ids: Collection[uuid.UUID]) -> Any:
    """Links of the request that its connect step moves to ``connect``: completed in the create
    phase, with a profile, on a server that still exists (one of ``server_ids``)."""
    return sa.and_(
        links.c.request_id == request_id,
        links.c.status == LinkStatus.COMPLETED,
        links.c.phase == Phase.CREATE,
        sa.func.coalesce(links.c.profile_url, "") != "",
        links.c.server_id.is_not(None),  # never NULL, so that the negation holds too
        links.c.server_id.in_(sorted(server_ids)),
    )


def create_phase(request_id: uuid.UUID) -> Any:
    """The request's create-phase links not canceled yet."""
    return sa.and_(
        links.c.request_id == request_id,
        links.c.phase == Phase.CREATE,
        links.c.status != LinkStatus.CANCELED,
    )


def not_connectable(request_id: uuid.UUID, server_ids: Collection[uuid.UUID]) -> Any:
    """The request's other create-phase links: its connect step cancels them."""
    others = ~connectable(request_id, server_ids) if server_ids else sa.true()
    return sa.and_(create_phase(request_id), others)


def of_request(request_id: uuid.UUID, statuses: Collection[str]) -> Any:
    """Links of the request in ``statuses``."""
    return sa.and_(links.c.request_id == request_id, links.c.status.in_(sorted(statuses)))


def not_started(request_id: uuid.UUID) -> Any:
    """Links of the request nobody works on yet (pending, queued, connect): closing cancels them."""
    return of_request(request_id, CANCELED_ON_CLOSE)


async def set_link_priority(
    conn: AsyncConnection, request_id: uuid.UUID, priority: int, now: datetime
) -> None:
    """Copy a request's new priority onto its unfinished links (they carry it for ordering)."""
    await conn.execute(
        links.update()
        .where(
            links.c.request_id == request_id,
            links.c.status.in_(sorted(ACTIVE | {LinkStatus.FAILED})),
        )
        .values(priority=priority)
    )
