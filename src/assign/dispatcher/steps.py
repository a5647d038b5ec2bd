"""The six steps of a dispatcher tick, each in its own short transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db.repositories import catalog, lost_servers
from assign.db.repositories import dispatch as repo
from assign.db.repositories import links as links_repo
from assign.db.repositories import requests as requests_repo
from assign.db.repositories import servers as servers_repo
from assign.dispatcher import events
from assign.domain import dispatch as policy
from assign.domain.ratelimit import RateLimit, allowance, start_of_day
from assign.domain.states import RequestStatus
from assign.services import retention, wake
from assign.services.context import Context
from assign.services.requests import connect_in

#: links placed per assignment statement; a tick repeats until slots or links run out
BATCH = 5000
#: windows of pending links read per batch before giving up on a crowded queue head
MAX_WINDOWS = 8


@dataclass
class TickReport:
    servers_lost: int = 0
    released: int = 0
    lost_failed: int = 0
    stale_failed: int = 0
    retried: int = 0
    exhausted: int = 0
    assigned: int = 0
    held_back: int = 0
    started: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    archived: int = 0
    #: the placement found every ready server's slots taken (the next freed slot is work)
    slots_full: bool = False

    @property
    def busy(self) -> bool:
        """True when the tick did something that may let the next one do more."""
        return bool(self.assigned or self.retried or self.released)


async def expire_lost_servers(ctx: Context, now: datetime, report: TickReport) -> None:
    """Step 1: silent servers -> offline, their running links failed; queued links of every
    server that is not online back to pending."""
    settings = ctx.settings
    silent_since = now - timedelta(minutes=settings.server_timeout_minutes)

    lost_log: list[dict[str, object]] = []

    async def work(conn: AsyncConnection) -> None:
        silent = await lost_servers.silent_servers(conn, silent_since=silent_since)
        await lost_servers.lock_step_one(conn, server_ids=silent)  # links, then servers
        lost = await lost_servers.expire_servers(
            conn, server_ids=silent, silent_since=silent_since, now=now
        )
        released = await lost_servers.release_queued(conn, now=now)
        failed = []
        if lost:
            failed = await repo.fail_working(
                conn, condition=repo.on_servers(lost), error="server lost: no heartbeat", now=now
            )
            await repo.set_retry_times(
                conn,
                failed,
                now=now,
                base=settings.retry_base_seconds,
                cap=settings.retry_max_seconds,
            )
        await servers_repo.add_tasks(conn, [(r.server_id, -1) for r in (*released, *failed)])
        report.servers_lost += len(lost)
        report.released += len(released)
        report.lost_failed += len(failed)
        lost_log[:] = await events.describe_lost(conn, lost, released, failed)

    await ctx.db.run(work)
    events.log_lost(lost_log)
    metrics.rescued.labels("server_lost").inc(report.lost_failed + report.released)


async def expire_stale_links(ctx: Context, now: datetime, report: TickReport) -> None:
    """Step 2: running/connecting links past the stale timeout -> failed (slot freed)."""
    settings = ctx.settings
    minutes = settings.stale_timeout_minutes
    cutoff = now - timedelta(minutes=minutes)

    async def work(conn: AsyncConnection) -> None:
        failed = await repo.fail_working(
            conn,
            condition=repo.started_before(cutoff),
            error=f"stale: no result within {minutes:g} minutes",
            now=now,
        )
        await repo.set_retry_times(
            conn, failed, now=now, base=settings.retry_base_seconds, cap=settings.retry_max_seconds
        )
        await servers_repo.add_tasks(conn, [(r.server_id, -1) for r in failed])
        report.stale_failed += len(failed)

    await ctx.db.run(work)
    metrics.rescued.labels("stale").inc(report.stale_failed)


async def retry_failed(ctx: Context, now: datetime, report: TickReport) -> None:
    """Step 3: retryable failed links whose back-off has run out -> back to the queue."""

    async def work(conn: AsyncConnection) -> int:
        return await repo.retry_due(conn, now=now)

    report.retried += await ctx.db.run(work)
    metrics.retried.inc(report.retried)


async def cancel_exhausted(ctx: Context, now: datetime, report: TickReport) -> None:
    """Step 4: failed links with no retries left, and every failed link of a closed request
    -> canceled."""

    async def work(conn: AsyncConnection) -> int:
        return await links_repo.mark_final_failed(conn, request_id=None, now=now, closed=True)

    report.exhausted += await ctx.db.run(work)
    metrics.canceled.inc(report.exhausted)


async def assign_pending(ctx: Context, now: datetime, report: TickReport) -> None:
    """Step 5: pending links -> queued on servers with free slots, within account limits."""
    async with ctx.db.read() as conn:
        limit = RateLimit.from_settings(await catalog.get_settings(conn, "rate_limit"))
    day_start = start_of_day(now, ctx.settings.tz)
    cooldown_since = (
        now - timedelta(minutes=limit.cooldown_minutes) if limit.cooldown_minutes > 0 else None
    )
    # accounts' allowances, read once a tick and carried from batch to batch (``now`` is the
    # tick's, so they would read the same again)
    budget: dict[str, int] = {}
    while True:
        batch = await ctx.db.run(
            partial(
                _assign_batch,
                ctx=ctx,
                now=now,
                limit=limit,
                day_start=day_start,
                cooldown_since=cooldown_since,
                known=budget,
                timeout_minutes=ctx.settings.server_timeout_minutes,
            )
        )
        budget = batch.budget
        report.slots_full = batch.slots_full
        report.assigned += batch.placed
        report.held_back += batch.held_back
        if batch.placed < BATCH:
            break
    metrics.dispatched.inc(report.assigned)
    metrics.held_back.inc(report.held_back)


@dataclass
class _Batch:
    placed: int
    held_back: int
    budget: dict[str, int]
    slots_full: bool = False


async def _assign_batch(
    conn: AsyncConnection,
    *,
    ctx: Context,
    now: datetime,
    limit: RateLimit,
    day_start: datetime,
    cooldown_since: datetime | None,
    known: dict[str, int],
    timeout_minutes: float,
) -> _Batch:
    # a copy: a transaction run again starts from what the committed batches left
    budget = dict(known)
    await repo.prepare_placement(conn)
    rows = await repo.free_servers(conn, now=now, timeout_minutes=timeout_minutes)
    free = [
        policy.FreeServer(r.id, r.priority, r.free, frozenset(r.service_types or ())) for r in rows
    ]
    slots = min(sum(s.free for s in free), BATCH)
    if slots <= 0:
        return _Batch(0, 0, budget, slots_full=True)
    # accounts an earlier batch of this tick used up are not read again
    skip_emails = {email for email, left in budget.items() if left <= 0}
    skip_types: set[str] = set()
    placed = held_back = read = 0
    for _ in range(MAX_WINDOWS):
        want = slots - placed
        if want <= 0:
            break
        size = policy.window_size(want=want, read=read, placed=placed, cap=2 * BATCH)
        window = await repo.pending_window(
            conn, size=size, skip_emails=sorted(skip_emails), skip_types=sorted(skip_types)
        )
        if not window:
            break
        read += len(window)
        fresh = sorted({r.email for r in window if r.email is not None and r.email not in budget})
        budget.update(
            await _allowances(
                conn, fresh, limit=limit, day_start=day_start, cooldown=cooldown_since, now=now
            )
        )
        candidates = [policy.Candidate(r.id, r.service_type, r.email) for r in window]
        plan = policy.plan(candidates, free, budget)
        # applied per window, so the next window reads past these links
        done = await repo.apply_assignments(
            conn, plan.assignments[:want], now=now, timeout_minutes=timeout_minutes
        )
        placed += len(done)
        # the claims waiting for these servers wake when this commits
        await wake.links_ready(ctx, conn, (server for _, server in done))
        held_back += plan.held_back
        skip_emails |= plan.held_emails
        skip_types |= plan.unplaceable_types
        if len(window) < size or len(skip_emails) > 5000:
            break
    return _Batch(placed, held_back, budget)


async def _allowances(
    conn: AsyncConnection,
    emails: list[str],
    *,
    limit: RateLimit,
    day_start: datetime,
    cooldown: datetime | None,
    now: datetime,
) -> dict[str, int]:
    """How many more links each of ``emails`` (accounts new to this batch) may take now."""
    if not emails:
        return {}
    used, recent = await repo.account_usage(
        conn, emails=emails, day_start=day_start, cooldown_since=cooldown
    )
    return {
        email: allowance(
            limit,
            done_today=0,
            in_flight=used.get(email, 0),
            last_dispatch=recent.get(email),
            now=now,
        )
        for email in emails
    }


async def close_requests(ctx: Context, now: datetime, report: TickReport) -> None:
    """Step 6: start requests with dispatched links; close those whose links are all done.

    On PostgreSQL the starts and a look for finished requests are one statement, run alone;
    the transaction that locks and closes them follows only when there is one, or when a
    request was just started (the look's snapshot shows it pending): a tick nearly always finds
    neither, and this step ran as four round trips every tick."""
    if ctx.db.combines_writes:
        started, finished = await ctx.db.run_alone(
            lambda conn: repo.start_requests_and_look(conn, now=now)
        )
        report.started += started
        # the look does not see the requests this statement started: one may be done already
        if not finished and not started:
            return

    async def work(conn: AsyncConnection) -> None:
        report.started += await repo.start_requests(conn, now=now)
        for row in await repo.finished_requests(conn):
            wants_connect = isinstance(row.config, dict) and row.config.get("connect") is True
            if row.status == RequestStatus.RUNNING and wants_connect:
                connected, _ = await connect_in(conn, row.id, now)
                status = RequestStatus.CONNECTING if connected else RequestStatus.FAILED
            else:
                status = RequestStatus.COMPLETED if row.any_completed else RequestStatus.FAILED
            await requests_repo.set_status(conn, row.id, status, now)
            report.finished[status] = report.finished.get(status, 0) + 1
            if status != RequestStatus.CONNECTING:
                metrics.requests_finished.labels(status.value).inc()

    await ctx.db.run(work)


async def archive_closed_links(ctx: Context, now: datetime, report: TickReport) -> None:
    """Housekeeping: one batch of long-closed requests' links to the archive (the leader's
    job, so it runs as a step; see services.retention)."""
    report.archived += await retention.archive_closed(ctx, now=now)


Step = Callable[[Context, datetime, "TickReport"], Awaitable[None]]
STEPS: tuple[Step, ...] = (
    expire_lost_servers,
    expire_stale_links,
    retry_failed,
    cancel_exhausted,
    assign_pending,
    close_requests,
    archive_closed_links,
)


#: what a wake-up between two full ticks runs: place the new work, close what finished
PROMPT_STEPS = (assign_pending, close_requests)
#: a wake-up soon after another: only the new work placed
PLACE_STEPS = (assign_pending,)


async def tick(
    ctx: Context, now: datetime | None = None, *, steps: Sequence[Step] = STEPS
) -> TickReport:
    """One pass of ``steps`` (by default all six), in order, each in its own transaction."""
    now = now or ctx.clock.now()
    report = TickReport()
    for step in steps:
        await step(ctx, now, report)
    return report
