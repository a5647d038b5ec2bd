"""SQL of the dispatcher's tick: each function one set-based statement or a few.

Row locks with SKIP LOCKED (nothing on SQLite, whose single writer holds every row) and, where
``dialect.bulk_arrays``, array-driven bulk updates.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect, rules
from assign.db.repositories import links as links_repo
from assign.db.repositories import requests as requests_repo
from assign.db.repositories import servers as servers_repo
from assign.db.tables import links, requests, servers
from assign.db.views import AnyRow
from assign.domain.backoff import retry_delay
from assign.domain.states import (
    ACTIVE,
    IN_FLIGHT,
    WORKING,
    LinkEvent,
    LinkStatus,
    RequestStatus,
    sources,
)

# --- step 1: lost servers ------------------------------------------------------------------


async def fail_working(
    conn: AsyncConnection, *, condition: Any, error: str, now: datetime
) -> list[AnyRow]:
    """Running/connecting links matching ``condition`` -> failed with ``error``; (id, server_id,
    retry_count) of each."""
    query = (
        links.update()
        .where(links.c.status.in_(sorted(WORKING)), condition)
        .values(status=LinkStatus.FAILED, error=error, updated_at=now)
        .returning(links.c.id, links.c.server_id, links.c.retry_count)
    )
    return list((await conn.execute(query)).all())


def on_servers(server_ids: Sequence[uuid.UUID]) -> Any:
    return links.c.server_id.in_(server_ids)


def started_before(cutoff: datetime) -> Any:
    return links.c.started_at < cutoff


async def set_retry_times(
    conn: AsyncConnection, rows: Sequence[Row[Any]], *, now: datetime, base: float, cap: float
) -> None:
    """Back-off of freshly failed links: ``retry_at`` = now + delay(retry_count), with jitter."""
    if not rows:
        return
    ids = [r.id for r in rows]
    times = [now + timedelta(seconds=retry_delay(r.retry_count, base=base, cap=cap)) for r in rows]
    if dialect.bulk_arrays(conn):
        await conn.execute(
            sa.text(
                "UPDATE links SET retry_at = v.retry_at FROM unnest("
                "CAST(:ids AS uuid[]), CAST(:times AS timestamptz[])) AS v(id, retry_at) "
                "WHERE links.id = v.id"
            ),
            {"ids": ids, "times": times},
        )
    else:
        await conn.execute(
            links.update()
            .where(links.c.id == sa.bindparam("b_id"))
            .values(retry_at=sa.bindparam("b_at")),
            [{"b_id": i, "b_at": t} for i, t in zip(ids, times, strict=True)],
        )


# --- step 3: retries -----------------------------------------------------------------------


async def retry_due(conn: AsyncConnection, *, now: datetime) -> int:
    """Retryable failed links whose back-off has run out (of open requests) -> queue; how many."""
    due = sa.or_(links.c.retry_at.is_(None), links.c.retry_at <= now)
    return len(await links_repo.retry_where(conn, due, now=now, skip_locked=True))


# --- step 5: assignment --------------------------------------------------------------------


async def free_servers(
    conn: AsyncConnection, *, now: datetime, timeout_minutes: float
) -> list[AnyRow]:
    """Ready servers (``rules.server_ready``) with a free slot, as last committed; not locked:
    :func:`apply_assignments` takes the slots under the rows' locks. (Locking them here, with
    ``SKIP LOCKED``, skipped every server whose result was being committed at that moment, and
    held the rows, which every result of the server updates, for the whole assignment.)"""
    query = (
        sa.select(
            servers.c.id,
            servers.c.priority,
            (servers.c.max_threads - servers.c.active_tasks).label("free"),
            servers.c.service_types,
        )
        .where(
            rules.server_ready(now=now, timeout_minutes=timeout_minutes),
            servers.c.active_tasks < servers.c.max_threads,
        )
        .order_by(servers.c.priority.desc(), servers.c.id)
    )
    return list((await conn.execute(query)).all())


async def take_slots(
    conn: AsyncConnection, server_ids: Iterable[uuid.UUID], *, now: datetime, timeout_minutes: float
) -> dict[uuid.UUID, int]:
    """The free slots of those of ``server_ids`` still ready, their rows locked ``FOR UPDATE`` in
    id order and read as the last writer left them (slots freed since :func:`free_servers`
    counted, slots taken since not); a server no longer ready is left out."""
    query = (
        sa.select(servers.c.id, (servers.c.max_threads - servers.c.active_tasks).label("free"))
        .where(
            servers.c.id.in_(sorted(set(server_ids))),
            rules.server_ready(now=now, timeout_minutes=timeout_minutes),
        )
        .order_by(servers.c.id)
        .with_for_update()
    )
    return {r.id: int(r.free) for r in await conn.execute(query)}


#: the settings of a placement transaction (PostgreSQL):
#:
#: * ``plan_cache_mode``: its statements planned with their actual parameters. A prepared
#:   statement run a few times may get a generic plan; in one, a list of accounts to skip is an
#:   unknown array, compared element by element on every row read instead of hashed: 20 s
#:   instead of 0.1 s a window at 1M links. Planning costs well under a millisecond a statement,
#:   and a batch runs a handful.
#: * ``synchronous_commit`` off: its commit returns before its WAL is flushed. Placements are
#:   done again when lost: a crash may undo those of up to about 3 x ``wal_writer_delay``
#:   before it (those links are pending again), never half of one, and whatever is acknowledged
#:   on top of them (a claim) commits with the flush, which writes every earlier commit first.
#:   The commit, 2-4 ms of waiting here, no longer holds the servers' rows that results update.
PLACEMENT_SETTINGS = {"plan_cache_mode": "force_custom_plan", "synchronous_commit": "off"}


async def prepare_placement(conn: AsyncConnection) -> None:
    """Give this transaction :data:`PLACEMENT_SETTINGS`, in one round trip."""
    await dialect.set_local(conn, PLACEMENT_SETTINGS)


async def pending_window(
    conn: AsyncConnection,
    *,
    size: int,
    skip_emails: Sequence[str],
    skip_types: Sequence[str],
) -> list[AnyRow]:
    """The next ``size`` pending links of open requests in dispatch order, locked; accounts and
    service types that can take nothing more this tick are left out."""
    query = sa.select(links.c.id, links.c.service_type, links.c.email).where(
        links.c.status == LinkStatus.PENDING,
        links.c.server_id.is_(None),
        rules.of_open_request(),
    )
    if skip_emails:
        # one array parameter on PostgreSQL: the statement stays the same whatever the length
        kept = dialect.not_in(conn, links.c.email, skip_emails)
        query = query.where(sa.or_(links.c.email.is_(None), kept))
    if skip_types:
        query = query.where(links.c.service_type.not_in(list(skip_types)))
    # a literal LIMIT keeps PostgreSQL on the index (a bound one tempted it into a full scan)
    query = query.order_by(links.c.priority.desc(), links.c.created_at, links.c.id).limit(
        sa.literal_column(str(int(size)))
    )
    query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def account_usage(
    conn: AsyncConnection,
    *,
    emails: Sequence[str],
    day_start: datetime,
    cooldown_since: datetime | None,
) -> tuple[dict[str, int], dict[str, datetime]]:
    """({email: completed today + in flight}, {email: last dispatch within the cooldown}).

    A completion today counts whatever the link's status now (PRODUCT §9). Each count is its own
    index range of ``(email, status, completed_at)``: in-flight statuses by (email, status),
    completions by (email, every status, completed_at >= day start), so an account's older
    history is never read.
    """
    used: dict[str, int] = {}
    recent: dict[str, datetime] = {}
    for chunk in dialect.chunks(conn, emails):
        of_chunk = dialect.is_in(conn, links.c.email, chunk)
        for counted in (
            links.c.status.in_(sorted(IN_FLIGHT)),
            # every status listed: one index range per (email, status) instead of all the email's
            sa.and_(links.c.status.in_(sorted(LinkStatus)), links.c.completed_at >= day_start),
        ):
            rows = await conn.execute(
                sa.select(links.c.email, sa.func.count())
                .where(of_chunk, counted)
                .group_by(links.c.email)
            )
            for email, n in rows:
                used[email] = used.get(email, 0) + int(n)
        if cooldown_since is not None:
            rows = await conn.execute(
                sa.select(links.c.email, sa.func.max(links.c.assigned_at))
                .where(
                    of_chunk,
                    links.c.assigned_at.is_not(None),
                    links.c.assigned_at >= cooldown_since,
                )
                .group_by(links.c.email)
            )
            recent.update({r[0]: r[1] for r in rows})
    return used, recent


#: the links placed and their servers' ``active_tasks`` raised, in one statement (both locked
#: already: the links by the pending window, the servers by take_slots)
_PLACE_PG = sa.text(
    "WITH moved AS (UPDATE links SET status = :queued, server_id = v.server_id, "
    "assigned_at = :now, updated_at = :now FROM unnest(CAST(:ids AS uuid[]), "
    "CAST(:servers AS uuid[])) AS v(id, server_id) WHERE links.id = v.id "
    "AND links.status = ANY(CAST(:sources AS text[])) RETURNING 1), "
    "counted AS (UPDATE servers SET active_tasks = servers.active_tasks + c.n "
    "FROM unnest(CAST(:sids AS uuid[]), CAST(:ns AS integer[])) AS c(id, n) "
    "WHERE servers.id = c.id RETURNING 1) "
    "SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM counted)"
)


def _within(
    pairs: Sequence[tuple[uuid.UUID, uuid.UUID]], free: dict[uuid.UUID, int]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The pairs, in their order, that each server's ``free`` slots take (the rest dropped)."""
    left = dict(free)
    kept = []
    for link_id, server_id in pairs:
        if left.get(server_id, 0) > 0:
            left[server_id] -= 1
            kept.append((link_id, server_id))
    return kept


#: one pending link queued on its server (SQLite's executemany; PostgreSQL: ``_PLACE_PG``)
_PLACE_SQLITE = (
    links.update()
    .where(
        links.c.id == sa.bindparam("b_id"),
        # literals: an executemany takes no expanding (list) parameter
        links.c.status.in_([sa.literal(s) for s in sorted(sources(LinkEvent.ASSIGN))]),
    )
    .values(
        status=LinkStatus.QUEUED,
        server_id=sa.bindparam("b_server"),
        assigned_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
)


async def apply_assignments(
    conn: AsyncConnection,
    pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
    *,
    now: datetime,
    timeout_minutes: float,
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Pending links (locked) -> queued on their servers, and the servers' ``active_tasks``
    raised: as many of each server's as it has free slots under its row's lock, in the order
    given (the rest stay pending). The (link, server) pairs placed."""
    if not pairs:
        return []
    free = await take_slots(
        conn, (server_id for _, server_id in pairs), now=now, timeout_minutes=timeout_minutes
    )
    pairs = _within(pairs, free)
    if not pairs:
        return []
    counts: dict[uuid.UUID, int] = {}
    for _, server_id in pairs:
        counts[server_id] = counts.get(server_id, 0) + 1
    if dialect.bulk_arrays(conn):
        ordered = sorted(counts.items())
        moved, _ = (
            await conn.execute(
                _PLACE_PG,
                {
                    "ids": [p[0] for p in pairs],
                    "servers": [p[1] for p in pairs],
                    "now": now,
                    "queued": LinkStatus.QUEUED.value,
                    "sources": [str(s) for s in sorted(sources(LinkEvent.ASSIGN))],
                    "sids": [server_id for server_id, _ in ordered],
                    "ns": [n for _, n in ordered],
                },
            )
        ).one()
    else:
        await dialect.execute_many(
            conn,
            _PLACE_SQLITE,
            [{"b_id": link_id, "b_server": server_id, "now": now} for link_id, server_id in pairs],
        )
        moved = len(pairs)  # the single writer holds the rows: all were pending
        await servers_repo.add_tasks(conn, counts.items())
    if moved != len(pairs):
        raise RuntimeError("a locked pending link changed under the dispatcher")
    return pairs


# --- step 6: requests ----------------------------------------------------------------------


def _starting(now: datetime) -> Any:
    """Pending requests with a dispatched link -> running (their ids returned)."""
    dispatched = sa.exists().where(
        links.c.request_id == requests.c.id,
        links.c.status.in_(sorted(IN_FLIGHT | {LinkStatus.COMPLETED})),
    )
    return (
        requests.update()
        .where(requests.c.status == RequestStatus.PENDING, dispatched)
        .values(**requests_repo.status_values(RequestStatus.RUNNING, now))
        .returning(requests.c.id)
    )


async def start_requests(conn: AsyncConnection, *, now: datetime) -> int:
    """Pending requests with a dispatched link -> running; how many."""
    return len((await conn.execute(_starting(now))).all())


async def start_requests_and_look(conn: AsyncConnection, *, now: datetime) -> tuple[int, bool]:
    """:func:`start_requests` and whether :func:`finished_requests` would find one, in one
    statement (PostgreSQL; run alone, it takes no lock but the started requests'): (how many
    started, whether any is finished)."""
    started = _starting(now).cte("started")
    query = sa.select(
        sa.select(sa.func.count()).select_from(started).scalar_subquery(),
        sa.exists().where(*_finished()),
    )
    n, finished = (await conn.execute(query)).one()
    return int(n), bool(finished)


def _nothing_left() -> list[Any]:
    """No link of the request is active or failed with retries left (as ``/requests/completable``
    decides it), as two anti-joins: each an index range of ``(request_id, status)``, so the
    request's completed and canceled links are never read."""
    of_request = links.c.request_id == requests.c.id
    active = sa.exists().where(of_request, links.c.status.in_(sorted(ACTIVE)))
    retryable = sa.exists().where(of_request, rules.RETRYABLE)
    return [~active, ~retryable]


def _finished() -> list[Any]:
    """Running/connecting requests with links and none active."""
    return [
        requests.c.status.in_([RequestStatus.RUNNING, RequestStatus.CONNECTING]),
        requests_repo.has_links(),
        *_nothing_left(),
    ]


async def finished_requests(conn: AsyncConnection, *, limit: int = 500) -> list[AnyRow]:
    """Running/connecting requests with links and none active; with whether any completed."""
    any_completed = (
        sa.exists()
        .where(links.c.request_id == requests.c.id, links.c.status == LinkStatus.COMPLETED)
        .label("any_completed")
    )
    query = (
        sa.select(requests.c.id, requests.c.status, requests.c.config, any_completed)
        .where(*_finished())
        .order_by(requests.c.priority.desc(), requests.c.created_at)
        .limit(limit)
    )
    query = query.with_for_update(of=requests, skip_locked=True)
    return list((await conn.execute(query)).all())


async def count_links_by_status(conn: AsyncConnection, statuses: Sequence[str]) -> dict[str, int]:
    """Link counts for the given statuses (index-only on PostgreSQL)."""
    rows = await conn.execute(
        sa.select(links.c.status, sa.func.count())
        .where(links.c.status.in_(statuses))
        .group_by(links.c.status)
    )
    return {r[0]: int(r[1]) for r in rows}
