"""Cluster-wide gauges, read from the database so that every process's /metrics agrees.

Links come from ``link_counts`` (kept by triggers; the links table is never counted), servers
and requests from small GROUP BYs. A process reads them at most once every ``MAX_AGE`` seconds,
when /metrics is scraped.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from prometheus_client import generate_latest

from assign import metrics
from assign.db.repositories import history as history_repo
from assign.domain.states import LinkStatus, RequestStatus, ServerStatus
from assign.services.context import Context
from assign.services.history import minute_of

#: seconds a process serves the gauges it read before reading them again
MAX_AGE = 5.0
log = logging.getLogger("assign.metrics")

#: when this process last read them, by database URL
_read_at: dict[str, float] = {}


async def refresh(ctx: Context, *, max_age: float = MAX_AGE) -> None:
    """Read the gauges from the database unless this process did within ``max_age`` seconds."""
    # two tasks reading at once is harmless: no lock
    last = _read_at.get(ctx.db.url, -1e9)
    if time.monotonic() - last < max_age:
        metrics.gauges_age.set(time.monotonic() - last)
        return
    now = ctx.clock.now()
    async with ctx.db.read(snapshot=True) as conn:
        links_ = await history_repo.link_totals(conn)
        servers_ = await history_repo.servers_by_status(conn)
        requests_ = await history_repo.requests_by_status(conn)
        completed, failed = await history_repo.finished_since(
            conn, since=minute_of(now) - timedelta(minutes=59)
        )
    for status in LinkStatus:
        metrics.links_by_state.labels(status.value).set(links_.get(status, 0))
    for server_status in ServerStatus:
        metrics.servers_by_status.labels(server_status.value).set(servers_.get(server_status, 0))
    for request_status in RequestStatus:
        metrics.requests_by_status.labels(request_status.value).set(
            requests_.get(request_status, 0)
        )
    metrics.finished_last_hour.labels("completed").set(completed)
    metrics.finished_last_hour.labels("failed").set(failed)
    _read_at[ctx.db.url] = time.monotonic()
    metrics.gauges_age.set(0)


async def exposition(ctx: Context) -> bytes:
    """The Prometheus text of this process, the cluster-wide gauges refreshed first (when the
    database does not answer, the last values read are served)."""
    try:
        await refresh(ctx)
    except Exception as exc:  # a scrape never fails on the database
        log.warning("gauges not refreshed", extra={"error_type": type(exc).__name__})
    return generate_latest(metrics.registry)
