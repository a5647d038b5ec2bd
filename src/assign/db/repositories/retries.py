"""SQL of retries: failed links back to the queue, exhausted ones canceled (PRODUCT §5, §6, §9)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import rules
from assign.db.repositories import locks
from assign.db.tables import links, requests, servers
from assign.domain.states import LinkStatus, Phase


def _retry_values(now: datetime) -> dict[str, Any]:
    """A retry: a connect-phase link back to ``connect`` on its server, a create-phase one to
    ``pending`` with no server and no URL of its earlier attempt. ``completed_at`` is kept."""
    connect_phase = links.c.phase == Phase.CONNECT
    return {
        "status": sa.case((connect_phase, LinkStatus.CONNECT), else_=LinkStatus.PENDING),
        "server_id": sa.case((connect_phase, links.c.server_id), else_=None),
        "profile_url": sa.case((connect_phase, links.c.profile_url), else_=None),
        "post_url": sa.case((connect_phase, links.c.post_url), else_=None),
        "retry_count": links.c.retry_count + 1,
        "retry_at": None,
        "started_at": None,
        "updated_at": now,
    }


async def retry_where(
    conn: AsyncConnection, condition: Any, *, now: datetime, skip_locked: bool = False
) -> list[Row[Any]]:
    """Retryable links matching ``condition`` of open requests moved back to the queue (a
    connect-phase one only while its server exists); the moved rows.

    Lock order: the links, then their servers (``FOR KEY SHARE``: a deletion of the server
    waits, or went first and canceled the link), then their requests (``FOR KEY SHARE``: a
    request being closed waits, or went first and the link stays failed)."""
    query = (
        sa.select(links.c.id, links.c.request_id, links.c.server_id, links.c.phase)
        .where(condition, rules.RETRYABLE)
        .order_by(links.c.id)
    )
    query = query.with_for_update(skip_locked=skip_locked)
    found = (await conn.execute(query)).all()
    if not found:
        return []
    connect = [r.server_id for r in found if r.phase == Phase.CONNECT]
    live = await locks.lock_ids(conn, servers, connect, key_share=True)
    open_ = await locks.lock_ids(
        conn, requests, [r.request_id for r in found], key_share=True, where=~rules.request_closed()
    )
    kept = [
        r.id
        for r in found
        if r.request_id in open_ and (r.phase != Phase.CONNECT or r.server_id in live)
    ]
    moved: list[Row[Any]] = []
    for start in range(0, len(kept), 5000):
        result = await conn.execute(
            links.update()
            .where(links.c.id.in_(kept[start : start + 5000]), rules.RETRYABLE)
            .values(**_retry_values(now))
            .returning(links)
        )
        moved.extend(result.all())
    return moved


async def retry(
    conn: AsyncConnection, *, link_ids: Sequence[uuid.UUID], now: datetime
) -> list[Row[Any]]:
    """Retryable links among ``link_ids`` (of open requests) moved back to the queue."""
    if not link_ids:
        return []
    return await retry_where(conn, links.c.id.in_(sorted(set(link_ids))), now=now)


async def mark_final_failed(
    conn: AsyncConnection, *, request_id: uuid.UUID | None, now: datetime, closed: bool = False
) -> int:
    """Exhausted failed links (of one request, or all) -> canceled, with ``closed`` also every
    failed link of a closed request; how many."""
    condition = (
        sa.or_(rules.EXHAUSTED, rules.failed_of_closed_request()) if closed else (rules.EXHAUSTED)
    )
    query = links.update().where(condition).values(status=LinkStatus.CANCELED, updated_at=now)
    if request_id is not None:
        query = query.where(links.c.request_id == request_id)
    return len((await conn.execute(query.returning(links.c.id))).all())
