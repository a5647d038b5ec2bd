"""Use cases of the tool API: a tool server reports results, one or a batch at a time (its
claims: claims.py)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db import views
from assign.db.repositories import history as history_repo
from assign.db.repositories import links as links_repo
from assign.db.repositories import tool as repo
from assign.domain.backoff import jitter, retry_delay
from assign.domain.states import WORKING, LinkStatus, Phase
from assign.errors import Conflict, NotFound
from assign.services import wake
from assign.services.context import Context
from assign.settings import Settings

NOT_FOUND = "Link not found"


def _not_working(status: str) -> str:
    return f"Link is {status}; only a running or connecting link takes a result"


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """One result as a tool server reports it."""

    link_id: uuid.UUID
    status: str
    profile_url: str | None = None
    post_url: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None


def _outcome(link: Any, report: Report, now: datetime, settings: Settings) -> repo.Outcome:
    """What ``report`` makes of ``link``. A failed attempt's URLs are not kept on the link."""
    details = report.details
    if details is not None and "details" in link._fields:  # SQLite: merged here
        details = {**(link.details if isinstance(link.details, dict) else {}), **details}
    if report.status == LinkStatus.COMPLETED:
        return repo.Outcome(
            link.id, report.status, None, None, report.profile_url, report.post_url, details
        )
    delay = retry_delay(
        link.retry_count, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
    )
    retry_at = now + timedelta(seconds=delay)
    return repo.Outcome(
        link.id, report.status, report.error or "failed", retry_at, None, None, details
    )


@dataclass
class _Applied:
    answers: list[dict[str, Any]]
    applied: int
    rows: list[Any]


async def _apply(
    conn: AsyncConnection,
    ctx: Context,
    server_id: uuid.UUID,
    reports: Sequence[Report],
    now: datetime,
) -> _Applied:
    """Every report on its own, in a handful of statements: links (locked in id order), the
    server's slots in one update, the requests' create-phase counts in one."""
    found = await repo.lock_for_results(conn, [r.link_id for r in reports])
    answers: list[dict[str, Any]] = []
    outcomes = []
    created: Counter[Any] = Counter()
    for report in reports:
        link = found.get(report.link_id)
        if link is None or link.server_id != server_id:
            answers.append({"id": report.link_id, "code": 404, "error": NOT_FOUND})
        elif link.status not in WORKING:
            answers.append({"id": report.link_id, "code": 409, "error": _not_working(link.status)})
        else:
            outcomes.append(_outcome(link, report, now, ctx.settings))
            if report.status == LinkStatus.COMPLETED and link.phase == Phase.CREATE:
                created[link.request_id] += 1
            answers.append({"id": report.link_id, "code": 200})
    updated = await repo.apply_outcomes(
        conn, outcomes, server_id=server_id, created=dict(created), now=now
    )
    # a failed attempt's URLs stay with the attempt (the trigger recorded the link's: none)
    await history_repo.set_attempt_urls(
        conn,
        [
            (r.link_id, r.profile_url, r.post_url)
            for r, a in zip(reports, answers, strict=True)
            if a["code"] == 200
            and r.status != LinkStatus.COMPLETED
            and (r.profile_url or r.post_url)
        ],
    )
    return _Applied(answers, len(outcomes), updated)


def _in_one_statement(ctx: Context, reports: Sequence[Report]) -> bool:
    """Whether ``reports`` are applied by one statement (PostgreSQL, see
    ``repo.report_in_one``): all but a failed result carrying URLs, which are then set on its
    attempt by a second statement, after the history trigger has ended it."""
    return ctx.db.combines_writes and not any(
        r.status != LinkStatus.COMPLETED and (r.profile_url or r.post_url) for r in reports
    )


async def _apply_in_one(
    conn: AsyncConnection,
    ctx: Context,
    server_id: uuid.UUID,
    reports: Sequence[Report],
    now: datetime,
    rows: bool = True,
) -> list[tuple[dict[str, Any], Any]]:
    """:func:`_apply` as one statement, the same checks on the locked links in SQL: (answer,
    the link's new row or None) per report (without ``rows``, a row of its id alone)."""
    settings = ctx.settings
    found = await repo.report_in_one(
        conn,
        [
            repo.Report(
                r.link_id,
                r.status,
                None if r.status == LinkStatus.COMPLETED else r.error or "failed",
                r.profile_url if r.status == LinkStatus.COMPLETED else None,
                r.post_url if r.status == LinkStatus.COMPLETED else None,
                r.details,
            )
            for r in reports
        ],
        server_id=server_id,
        now=now,
        factors=[jitter() for _ in reports],
        base=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
        rows=rows,
    )
    out: list[tuple[dict[str, Any], Any]] = []
    for report in reports:
        link = found.get(report.link_id)
        if link is None or link.found_server_id != server_id:
            out.append(({"id": report.link_id, "code": 404, "error": NOT_FOUND}, None))
        elif link.id is None:
            error = _not_working(link.found_status)
            out.append(({"id": report.link_id, "code": 409, "error": error}, None))
        else:
            out.append(({"id": report.link_id, "code": 200}, link))
    return out


async def _in_one(
    ctx: Context, server_id: uuid.UUID, reports: Sequence[Report], *, rows: bool = True
) -> list[tuple[dict[str, Any], Any]]:
    """``reports`` applied by one statement, alone (see ``Database.run_alone``)."""
    now = ctx.clock.now()
    return await ctx.db.run_alone(
        lambda conn: _apply_in_one(conn, ctx, server_id, reports, now, rows)
    )


async def _in_transaction(
    ctx: Context, server_id: uuid.UUID, reports: Sequence[Report]
) -> list[tuple[dict[str, Any], Any]]:
    """``reports`` applied by :func:`_apply` in one transaction, with the new rows of the links
    that took their result: (answer, row or None) per report."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> list[tuple[dict[str, Any], Any]]:
        applied = await _apply(conn, ctx, server_id, reports, now)
        rows = {r.id: r for r in applied.rows}
        out = []
        for answer in applied.answers:
            row = None
            if answer["code"] == 200:
                row = rows.get(answer["id"]) or await links_repo.get(conn, answer["id"])
            out.append((answer, row))
        return out

    return await ctx.db.run(work)


async def _applied(
    ctx: Context, server_id: uuid.UUID, reports: Sequence[Report], now: datetime
) -> _Applied:
    """``reports`` applied in their own transaction (one statement where it can be); on
    PostgreSQL, ``rows`` of the links' ids alone (the batched results answer no link)."""
    if _in_one_statement(ctx, reports):
        done = await _in_one(ctx, server_id, reports, rows=False)
        rows = [row for _, row in done if row is not None]
        return _Applied([answer for answer, _ in done], len(rows), rows)
    return await ctx.db.run(lambda conn: _apply(conn, ctx, server_id, reports, now))


async def report_results(
    ctx: Context, *, server_id: uuid.UUID, reports: Sequence[Report]
) -> tuple[int, list[dict[str, Any]]]:
    """(how many applied, ``{"id", "code", "error"?}`` per report in the order given): each
    report applied as :func:`report_result` would, all in one transaction."""
    now = ctx.clock.now()
    applied = await _applied(ctx, server_id, reports, now)
    if applied.applied:
        wake.slots_freed(ctx)
    for report, answer in zip(reports, applied.answers, strict=True):
        if answer["code"] == 200:
            metrics.link_results.labels(report.status).inc()
    return applied.applied, applied.answers


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
    report = Report(link_id, status, profile_url, post_url, error, details)
    one = _in_one_statement(ctx, [report])
    apply = _in_one if one else _in_transaction
    if ctx.db.in_transaction():  # part of a larger unit: in its transaction, alone
        ((answer, row),) = await apply(ctx, server_id, [report])
    else:
        # the server's results arriving while one is applied go together in the next
        # statement (on SQLite, transaction: one writer at a time anyway)
        answer, row = await ctx.result_batches.submit(
            (server_id, one), report, partial(apply, ctx, server_id)
        )
    if answer["code"] == 404:
        raise NotFound(NOT_FOUND)
    if answer["code"] == 409:
        raise Conflict(answer["error"])
    wake.slots_freed(ctx)
    metrics.link_results.labels(status).inc()
    return views.link(row)
