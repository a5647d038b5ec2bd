"""SQL of the tool API's results, a handful of statements whatever the count (claims: claims.py).

Every statement is built once (building one and its cache key costs more Python than running it).
Lock order: links (in id order, or SKIP LOCKED), then the server's row in one short update, then
requests in id order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import dialect
from assign.db.repositories import servers as servers_repo
from assign.db.tables import links, requests
from assign.db.views import AnyRow
from assign.domain.states import LinkStatus, Phase

# --- results ---------------------------------------------------------------------------------

#: what a result needs to know of its link before it is applied
_RESULT_COLUMNS = (
    links.c.id, links.c.server_id, links.c.status, links.c.phase, links.c.request_id,
    links.c.retry_count,
)  # fmt: skip
_LOCK_PG = (
    sa.select(*_RESULT_COLUMNS)
    .where(links.c.id == sa.any_(sa.bindparam("ids", type_=sa.ARRAY(sa.Uuid()))))
    .order_by(links.c.id)
    .with_for_update()
)
_LOCK_SQLITE = sa.select(*_RESULT_COLUMNS, links.c.details).where(
    links.c.id.in_(sa.bindparam("ids", expanding=True))
)


async def lock_for_results(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[Any, AnyRow]:
    """The links among ``ids`` (locked in id order), by id: what a result needs of each (on
    SQLite also ``details``, merged there in Python)."""
    statement = _LOCK_PG if dialect.bulk_arrays(conn) else _LOCK_SQLITE
    rows = (await conn.execute(statement, {"ids": list(ids)})).all()
    return {r.id: r for r in rows}


@dataclass(frozen=True)
class Outcome:
    """The new values of one link taking its result."""

    id: uuid.UUID
    status: str
    error: str | None
    retry_at: datetime | None
    profile_url: str | None
    post_url: str | None
    details: dict[str, Any] | None  # to merge into the link's (PostgreSQL) or the merged whole


_FINISH_PG = sa.text(
    "UPDATE links SET status = v.status, updated_at = :now, error = v.error, "
    "completed_at = CASE WHEN v.status = :completed THEN :now ELSE links.completed_at END, "
    "retry_at = CASE WHEN v.status = :failed THEN v.retry_at ELSE links.retry_at END, "
    "profile_url = COALESCE(v.profile_url, links.profile_url), "
    "post_url = COALESCE(v.post_url, links.post_url), "
    "details = CASE WHEN v.details IS NULL THEN links.details "
    "WHEN jsonb_typeof(links.details) = 'object' THEN links.details || CAST(v.details AS jsonb) "
    "ELSE CAST(v.details AS jsonb) END "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:errors AS text[]), "
    "CAST(:retry_ats AS timestamptz[]), CAST(:profiles AS text[]), CAST(:posts AS text[]), "
    "CAST(:details AS text[])) AS v(id, status, error, retry_at, profile_url, post_url, details) "
    "WHERE links.id = v.id"
)
_FINISH_PG_RETURNING = sa.text(_FINISH_PG.text + " RETURNING links.*").columns(*links.c)
# One statement for the common batch (its links' requests are one at most): the links, then
# the server's slots and the request's count. The links are locked already (lock_for_results);
# the one-time filter runs the server's update before the request's, so the hot server row is
# taken in the order every writer takes it and held only until the commit that follows.
_APPLY_PG = sa.text(
    "WITH done AS (" + _FINISH_PG.text + " RETURNING links.*), "
    "slots AS (UPDATE servers SET active_tasks = servers.active_tasks - :n, last_active = :now "
    "WHERE servers.id = :sid RETURNING 1), "
    "counted AS (UPDATE requests SET created_links = requests.created_links + :created, "
    "updated_at = :now WHERE requests.id = :request_id RETURNING 1) "
    "SELECT done.* FROM done WHERE (SELECT count(*) FROM slots) >= 0 "
    "AND (SELECT count(*) FROM counted) >= 0"
).columns(*links.c)

# --- results in one statement (PostgreSQL) ------------------------------------------------------
#
# What :func:`lock_for_results` and :func:`apply_outcomes` do in a transaction, as one statement
# (run alone, see Database.run_alone). Lock order as everywhere: the links in id order
# (``locked``), then the server's row (``slots``: its initplan reads ``done``, which reads
# ``locked``), then the requests in id order (``held``: its one-time filter runs ``slots``
# first; an empty ``held`` locks nothing). A link takes its result when it is the server's and running or connecting, read from
# the locked row, as the Python check does; every locked link comes back with what it was found
# as, and with its new values when it took its result. A failed result's back-off is
# ``assign.domain.backoff.retry_delay`` of the link's ``retry_count``, its jitter factor drawn
# in Python (``factors``).

#: the results as rows: arrays unnested, or one result's scalars (a statement with array
#: parameters is planned again at every execution, as PostgreSQL finds its custom plan cheaper
#: than the generic one; planning it cost more than running it)
_MANY = (
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), "
    "CAST(:errors AS text[]), CAST(:factors AS float8[]), CAST(:profiles AS text[]), "
    "CAST(:posts AS text[]), CAST(:details AS text[])) "
    "AS v(id, status, error, factor, profile_url, post_url, details)",
    "links.id = ANY(CAST(:ids AS uuid[]))",
)
_ONE = (
    "SELECT CAST(:ids AS uuid) AS id, CAST(:statuses AS text) AS status, "
    "CAST(:errors AS text) AS error, CAST(:factors AS float8) AS factor, "
    "CAST(:profiles AS text) AS profile_url, CAST(:posts AS text) AS post_url, "
    "CAST(:details AS text) AS details",
    "links.id = CAST(:ids AS uuid)",
)


def _report_statement(results: str, ids: str, *, rows: bool = True) -> Any:
    """The statement; without ``rows``, each link comes back with what it was found as and
    its id alone when it took its result, not its new values (the batched results answer no
    link, and bringing back its 25 columns cost about 0.02 ms of the API's CPU a link)."""
    taken = "done.*" if rows else "done.id AS id"
    columns = links.c if rows else (sa.column("id", sa.Uuid()),)
    return sa.text(
        f"WITH v AS ({results}), "
        "locked AS MATERIALIZED (SELECT links.id, links.server_id, links.status FROM links "
        f"WHERE {ids} ORDER BY links.id FOR UPDATE), "
        "done AS (UPDATE links SET status = v.status, updated_at = :now, error = v.error, "
        "completed_at = CASE WHEN v.status = :completed THEN :now ELSE links.completed_at END, "
        "retry_at = CASE WHEN v.status = :failed THEN :now + make_interval(secs => "
        "LEAST(CAST(:cap AS float8), CAST(:base AS float8) "
        "* power(CAST(2 AS float8), LEAST(links.retry_count, 62))) * v.factor) "
        "ELSE links.retry_at END, "
        "profile_url = COALESCE(v.profile_url, links.profile_url), "
        "post_url = COALESCE(v.post_url, links.post_url), "
        "details = CASE WHEN v.details IS NULL THEN links.details "
        "WHEN jsonb_typeof(links.details) = 'object' "
        "THEN links.details || CAST(v.details AS jsonb) ELSE CAST(v.details AS jsonb) END "
        "FROM v, locked WHERE links.id = v.id AND locked.id = v.id AND locked.server_id = :sid "
        "AND locked.status IN ('running', 'connecting') RETURNING links.*), "
        "slots AS (UPDATE servers SET active_tasks = servers.active_tasks - d.n, "
        "last_active = :now FROM (SELECT count(*) AS n FROM done) AS d "
        "WHERE servers.id = :sid AND d.n > 0 RETURNING 1), "
        "created AS (SELECT done.request_id, count(*) AS n FROM done "
        "WHERE done.status = :completed AND done.phase = :create GROUP BY done.request_id), "
        "held AS MATERIALIZED (SELECT requests.id FROM requests "
        "WHERE requests.id IN (SELECT created.request_id FROM created) "
        "AND (SELECT count(*) FROM slots) >= 0 ORDER BY requests.id FOR UPDATE), "
        "counted AS (UPDATE requests SET created_links = requests.created_links + created.n, "
        "updated_at = :now FROM created, held WHERE requests.id = created.request_id "
        "AND held.id = created.request_id RETURNING 1) "
        "SELECT locked.id AS found_id, locked.server_id AS found_server_id, "
        f"locked.status AS found_status, {taken} FROM locked LEFT JOIN done ON done.id = locked.id "
        "WHERE (SELECT count(*) FROM counted) >= 0"
    ).columns(
        sa.column("found_id", sa.Uuid()),
        sa.column("found_server_id", sa.Uuid()),
        sa.column("found_status", sa.String()),
        *columns,
    )


_REPORT_MANY = _report_statement(*_MANY)
_REPORT_ONE = _report_statement(*_ONE)
_REPORT_MANY_IDS = _report_statement(*_MANY, rows=False)
_REPORT_ONE_IDS = _report_statement(*_ONE, rows=False)


@dataclass(frozen=True)
class Report:
    """A result as the statement takes it: what does not depend on the link."""

    id: uuid.UUID
    status: str
    error: str | None
    profile_url: str | None
    post_url: str | None
    details: dict[str, Any] | None


async def report_in_one(
    conn: AsyncConnection,
    reports: Sequence[Report],
    *,
    server_id: uuid.UUID,
    now: datetime,
    factors: Sequence[float],
    base: float,
    cap: float,
    rows: bool = True,
) -> dict[Any, AnyRow]:
    """Apply ``reports`` of the server's links in one statement (PostgreSQL); by link id,
    every link found: ``found_id``, ``found_server_id`` and ``found_status`` (its state when
    locked) and, when it took its result (``id`` not None), its new values (without
    ``rows``, its ``id`` alone)."""
    dumps = orjson.dumps
    values: dict[str, Any] = {
        "ids": [r.id for r in reports],
        "statuses": [r.status for r in reports],
        "errors": [r.error for r in reports],
        "factors": list(factors),
        "profiles": [r.profile_url for r in reports],
        "posts": [r.post_url for r in reports],
        "details": [None if r.details is None else dumps(r.details).decode() for r in reports],
    }
    statement = _REPORT_MANY if rows else _REPORT_MANY_IDS
    if len(reports) == 1:
        statement = _REPORT_ONE if rows else _REPORT_ONE_IDS
        values = {name: items[0] for name, items in values.items()}
    values.update(
        now=now,
        sid=server_id,
        completed=LinkStatus.COMPLETED.value,
        failed=LinkStatus.FAILED.value,
        create=Phase.CREATE.value,
        base=base,
        cap=cap,
    )
    found = (await conn.execute(statement, values)).all()
    return {r.found_id: r for r in found}


_FINISH_SQLITE = (
    links.update()
    .where(links.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        updated_at=sa.bindparam("now"),
        error=sa.bindparam("b_error"),
        completed_at=sa.case(
            (sa.bindparam("b_status") == LinkStatus.COMPLETED, sa.bindparam("now")),
            else_=links.c.completed_at,
        ),
        retry_at=sa.case(
            (
                sa.bindparam("b_status") == LinkStatus.FAILED,
                sa.bindparam("b_retry_at", type_=links.c.retry_at.type),
            ),
            else_=links.c.retry_at,
        ),
        profile_url=sa.func.coalesce(
            sa.bindparam("b_profile", type_=sa.String), links.c.profile_url
        ),
        post_url=sa.func.coalesce(sa.bindparam("b_post", type_=sa.String), links.c.post_url),
        details=sa.case(
            (sa.bindparam("b_keep", type_=sa.Boolean), links.c.details),
            else_=sa.bindparam("b_details", type_=links.c.details.type),
        ),
    )
)


def _finish_values(outcomes: Sequence[Outcome], now: datetime) -> dict[str, Any]:
    dumps = orjson.dumps
    return {
        "now": now,
        "completed": LinkStatus.COMPLETED.value,
        "failed": LinkStatus.FAILED.value,
        "ids": [o.id for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "errors": [o.error for o in outcomes],
        "retry_ats": [o.retry_at for o in outcomes],
        "profiles": [o.profile_url for o in outcomes],
        "posts": [o.post_url for o in outcomes],
        "details": [None if o.details is None else dumps(o.details).decode() for o in outcomes],
    }


async def apply_outcomes(
    conn: AsyncConnection,
    outcomes: Sequence[Outcome],
    *,
    server_id: uuid.UUID,
    created: dict[Any, int],
    now: datetime,
) -> list[AnyRow]:
    """Apply the outcomes (links locked by :func:`lock_for_results`, all of the server): the
    links updated, the server's slots freed (seen active), ``created`` completions counted on
    their requests. The updated links on PostgreSQL (on SQLite read them with ``links.get``)."""
    if not outcomes:
        return []
    if dialect.bulk_arrays(conn) and len(created) <= 1:
        ((request_id, n_created),) = created.items() if created else ((None, 0),)
        values = {
            **_finish_values(outcomes, now),
            "sid": server_id,
            "n": len(outcomes),
            "request_id": request_id,
            "created": n_created,
        }
        return list((await conn.execute(_APPLY_PG, values)).all())
    rows: list[AnyRow] = []
    if dialect.bulk_arrays(conn):
        rows = list((await conn.execute(_FINISH_PG_RETURNING, _finish_values(outcomes, now))).all())
    else:
        await dialect.execute_many(
            conn,
            _FINISH_SQLITE,
            [
                {
                    "now": now,
                    "b_id": o.id,
                    "b_status": o.status,
                    "b_error": o.error,
                    "b_retry_at": o.retry_at,
                    "b_profile": o.profile_url,
                    "b_post": o.post_url,
                    "b_keep": o.details is None,
                    "b_details": o.details,
                }
                for o in outcomes
            ],
        )
    await servers_repo.add_tasks(conn, [(server_id, -len(outcomes))], active_at=now)
    await count_created(conn, created, now)
    return rows


_LOCK_REQUESTS = sa.text(
    "SELECT 1 FROM requests WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
)
_COUNT_PG = sa.text(
    "UPDATE requests SET created_links = requests.created_links + v.n, updated_at = :now "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:ns AS integer[])) AS v(id, n) "
    "WHERE requests.id = v.id"
)
_COUNT_SQLITE = (
    requests.update()
    .where(requests.c.id == sa.bindparam("b_id"))
    .values(
        created_links=requests.c.created_links + sa.bindparam("b_n", type_=sa.Integer),
        updated_at=sa.bindparam("now"),
    )
)


async def count_created(conn: AsyncConnection, counts: dict[Any, int], now: datetime) -> None:
    """Create-phase completions counted on their requests (rows locked in id order)."""
    if not counts:
        return
    ids = sorted(counts)
    if dialect.bulk_arrays(conn):
        if len(ids) > 1:
            await conn.execute(_LOCK_REQUESTS, {"ids": ids})
        await conn.execute(_COUNT_PG, {"now": now, "ids": ids, "ns": [counts[i] for i in ids]})
    else:
        await conn.execute(_COUNT_SQLITE, [{"now": now, "b_id": i, "b_n": counts[i]} for i in ids])
