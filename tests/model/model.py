"""The plain-Python model of links, servers and requests that the state machine checks the app
against: what PRODUCT.md (§4-§6, and §9 where it settles them) says each operation does. No I/O.

The settings make it exact: the clock moves in whole minutes and the retry back-off is
``retry_base = retry_max = 60 s``, so with any jitter a failure becomes due for retry exactly one
minute after it happened; the rate limit is small (4 posts a day, 2 minutes of cooldown).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

TYPES = ("entity", "social")
EMAILS = ("a@model.test", "b@model.test")
IN_FLIGHT = {"queued", "running", "connecting"}
WORKING = {"running", "connecting"}
ACTIVE = {"pending", "queued", "running", "connect", "connecting"}
UNFINISHED = {"pending", "queued", "running"}
CLOSED = {"completed", "failed", "canceled"}  # a closed request gets no new work
CANCELED_ON_CLOSE = {"pending", "queued", "connect"}

START = datetime(2025, 6, 1, 23, 0, tzinfo=UTC)  # runs cross midnight
MAX_POSTS_PER_DAY = 4
COOLDOWN_MINUTES = 2
STALE_MINUTES = 15  # ASSIGN_STALE_TIMEOUT_MINUTES default
SERVER_TIMEOUT_MINUTES = 5  # ASSIGN_SERVER_TIMEOUT_MINUTES default
RETRY_SECONDS = 60  # retry_base = retry_max: back-off in [30 s, 60 s] whatever the jitter


@dataclass
class MServer:
    id: str
    key: str
    max_threads: int
    priority: int
    service_types: list[str]
    status: str
    created_at: datetime
    last_health_check: datetime | None = None

    def accepts(self, service_type: str) -> bool:
        return not self.service_types or service_type in self.service_types

    def ready(self, now: datetime) -> bool:
        """Online with a heartbeat within the server timeout (never one that sent none)."""
        limit = now - timedelta(minutes=SERVER_TIMEOUT_MINUTES)
        beat = self.last_health_check
        return self.status == "online" and beat is not None and beat >= limit


@dataclass
class MRequest:
    id: str
    service_type: str
    priority: int
    connect_config: bool
    created_at: datetime
    status: str = "pending"
    created_links: int = 0

    @property
    def closed(self) -> bool:
        return self.status in CLOSED


@dataclass
class MAttempt:
    """One claim of a link (PRODUCT §11): numbered by its place in ``MLink.attempts``."""

    phase: str
    server_id: str | None
    started_at: datetime
    outcome: str | None = None  # completed | failed | stale | lost | canceled, once it ended
    finished_at: datetime | None = None


@dataclass
class MLink:
    id: str
    request_id: str
    service_type: str
    email: str | None
    password: str
    priority: int
    max_retries: int
    created_at: datetime
    status: str
    server_id: str | None
    phase: str = "create"
    retry_count: int = 0
    profile_url: str | None = None
    post_url: str | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    attempts: list[MAttempt] = field(default_factory=list)

    @property
    def order(self) -> tuple[int, datetime, uuid.UUID]:
        """Dispatch order: request priority (high first), then oldest, then id."""
        return (-self.priority, self.created_at, uuid.UUID(self.id))

    @property
    def has_profile(self) -> bool:
        return bool(self.profile_url)

    @property
    def retryable(self) -> bool:
        return self.status == "failed" and self.retry_count < self.max_retries

    @property
    def exhausted(self) -> bool:
        return self.status == "failed" and self.retry_count >= self.max_retries

    @property
    def create_completed(self) -> bool:
        """Its create phase completed, whatever its status now."""
        return self.phase == "connect" or self.completed_at is not None

    def start_attempt(self, now: datetime) -> None:
        """A claim: a new attempt on the link's server, in its phase."""
        assert not self.attempts or self.attempts[-1].outcome is not None, "an attempt is open"
        self.attempts.append(MAttempt(self.phase, self.server_id, now))

    def end_attempt(self, outcome: str, now: datetime) -> None:
        """The working link moved on: its open attempt ends with ``outcome``."""
        last = self.attempts[-1]
        assert last.outcome is None, f"{self.id}: no open attempt to end"
        last.outcome, last.finished_at = outcome, now


@dataclass
class TickCounts:
    servers_lost: int = 0
    released: int = 0
    lost_failed: int = 0
    stale_failed: int = 0
    retried: int = 0
    exhausted: int = 0
    assigned: int = 0
    started: int = 0
    finished: dict[str, int] = field(default_factory=dict)


def day_start(now: datetime) -> datetime:
    return datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)


@dataclass
class Model:
    servers: dict[str, MServer] = field(default_factory=dict)
    requests: dict[str, MRequest] = field(default_factory=dict)
    links: dict[str, MLink] = field(default_factory=dict)

    # --- reading ---------------------------------------------------------------------------

    def in_flight(self, server_id: str) -> int:
        return sum(1 for lk in self.links.values() if lk.server_id == server_id
                   and lk.status in IN_FLIGHT)  # fmt: skip

    def free_slots(self, server: MServer) -> int:
        return server.max_threads - self.in_flight(server.id)

    def of_request(self, request_id: str) -> list[MLink]:
        return [lk for lk in self.links.values() if lk.request_id == request_id]

    def can_retry(self, link: MLink) -> bool:
        """Retryable, and its request open (a connect-phase link's server always exists: its
        deletion cancels it)."""
        return link.retryable and not self.requests[link.request_id].closed

    def account_stats(self, email: str, request_id: str | None, now: datetime) -> dict[str, Any]:
        mine = [lk for lk in self.links.values() if lk.email == email]
        in_request = [lk for lk in mine if lk.request_id == request_id]
        return {
            "pending_count": sum(1 for lk in mine if lk.status in UNFINISHED),
            "today_count": sum(1 for lk in mine if lk.completed_at and lk.completed_at >= day_start(now)),
            "total_completed": sum(1 for lk in mine if lk.create_completed),
            "request_pending": sum(1 for lk in in_request if lk.status in UNFINISHED),
            "request_completed": sum(1 for lk in in_request if lk.create_completed),
            "last_post_at": max((lk.completed_at for lk in mine if lk.completed_at), default=None),
        }  # fmt: skip

    # --- transitions -----------------------------------------------------------------------

    def fail(self, link: MLink, now: datetime, outcome: str = "failed") -> None:
        """A running/connecting link fails: a failed result, a stale timeout (``stale``) or a
        lost server (``lost``), the outcome of its attempt."""
        link.status = "failed"
        link.failed_at = now
        link.end_attempt(outcome, now)

    def retry_now(self, link: MLink) -> None:
        """A retryable failed link back to the queue: a connect-phase one to ``connect`` on its
        server, a create-phase one to pending with no server and no URL."""
        link.retry_count += 1
        link.started_at = None
        link.failed_at = None
        if link.phase == "connect":
            link.status = "connect"
        else:
            link.status = "pending"
            link.server_id = None
            link.profile_url = link.post_url = None

    def release_queued(self, server_ids: set[str]) -> int:
        released = 0
        for link in self.links.values():
            if link.server_id in server_ids and link.status == "queued":
                link.status = "pending"
                link.server_id = None
                released += 1
        return released

    def set_request_status(self, request: MRequest, status: str) -> None:
        """Any status; closing cancels the links nobody works on yet."""
        request.status = status
        if request.closed:
            for link in self.of_request(request.id):
                if link.status in CANCELED_ON_CLOSE:
                    link.status = "canceled"

    def connect_links(self, request: MRequest, now: datetime) -> tuple[int, int]:
        """The connect step: each completed create-phase link with a profile on a server that
        exists -> connect (retry_count 0, completed_at kept); every other create-phase link not
        canceled yet -> canceled (a running one's attempt ends ``canceled``)."""
        connected = canceled = 0
        for link in self.of_request(request.id):
            if link.phase != "create" or link.status == "canceled":
                continue
            if link.status == "completed" and link.has_profile and link.server_id in self.servers:
                link.status = link.phase = "connect"
                link.started_at = None
                link.retry_count = 0
                connected += 1
            else:
                if link.status in WORKING:
                    link.end_attempt("canceled", now)
                link.status = "canceled"
                canceled += 1
        return connected, canceled

    def delete_server(self, server: MServer) -> None:
        """Its connect links and failed connect-phase links canceled; its links keep no server."""
        del self.servers[server.id]
        for link in self.links.values():
            if link.server_id != server.id:
                continue
            if link.status == "connect" or (link.status == "failed" and link.phase == "connect"):
                link.status = "canceled"
            link.server_id = None

    # --- the dispatcher --------------------------------------------------------------------

    def tick(self, now: datetime) -> TickCounts:
        """The six steps of PRODUCT §6, as §9 settles them."""
        counts = TickCounts()
        # 1. silent online servers -> offline, working links failed; then the queued links of
        #    every server that is not online -> pending
        silent_since = now - timedelta(minutes=SERVER_TIMEOUT_MINUTES)
        for server in self.servers.values():
            last_seen = server.last_health_check or server.created_at
            if server.status == "online" and last_seen < silent_since:
                server.status = "offline"
                counts.servers_lost += 1
                for link in self.links.values():
                    if link.server_id == server.id and link.status in WORKING:
                        self.fail(link, now, "lost")
                        counts.lost_failed += 1
        resting = {s.id for s in self.servers.values() if s.status != "online"}
        counts.released = self.release_queued(resting)
        # 2. stale working links -> failed
        stale_before = now - timedelta(minutes=STALE_MINUTES)
        for link in self.links.values():
            if link.status in WORKING and link.started_at and link.started_at < stale_before:
                self.fail(link, now, "stale")
                counts.stale_failed += 1
        # 3. retryable failures of open requests whose back-off ran out -> back to the queue
        for link in self.links.values():
            due = link.failed_at is not None and now - link.failed_at >= timedelta(
                seconds=RETRY_SECONDS
            )
            if self.can_retry(link) and due:
                self.retry_now(link)
                counts.retried += 1
        # 4. exhausted failures, and every failure of a closed request -> canceled
        for link in self.links.values():
            if link.exhausted or (
                link.status == "failed" and self.requests[link.request_id].closed
            ):
                link.status = "canceled"
                counts.exhausted += 1
        counts.assigned = self.assign(now)  # 5.
        self.close_requests(now, counts)  # 6.
        return counts  # fmt: skip

    def assign(self, now: datetime) -> int:
        """Step 5: pending links of open requests -> ready servers, within the accounts' limits."""
        free = {
            s.id: self.free_slots(s)
            for s in sorted(self.servers.values(), key=lambda s: (-s.priority, uuid.UUID(s.id)))
            if s.ready(now) and self.free_slots(s) > 0
        }
        rank = {server_id: i for i, server_id in enumerate(free)}
        pending = sorted(
            (lk for lk in self.links.values()
             if lk.status == "pending" and not self.requests[lk.request_id].closed),
            key=lambda x: x.order,
        )  # fmt: skip
        budget: dict[str, int] = {}
        for email in {lk.email for lk in pending if lk.email is not None}:
            mine = [lk for lk in self.links.values() if lk.email == email]
            used = sum(1 for lk in mine if lk.status in IN_FLIGHT) + sum(
                1 for lk in mine if lk.completed_at and lk.completed_at >= day_start(now)
            )  # a completion today counts whatever the link's status now
            recent = [lk for lk in mine if lk.assigned_at is not None
                      and now - lk.assigned_at < timedelta(minutes=COOLDOWN_MINUTES)]  # fmt: skip
            budget[email] = 0 if used >= MAX_POSTS_PER_DAY or recent else 1
        placed = 0
        for link in pending:
            if link.email is not None and budget[link.email] <= 0:
                continue
            takers = [sid for sid, n in free.items()
                      if n > 0 and self.servers[sid].accepts(link.service_type)]  # fmt: skip
            if not takers:
                continue
            # highest priority, then most free slots, then the server order
            best = min(takers, key=lambda sid: (-self.servers[sid].priority, -free[sid], rank[sid]))
            free[best] -= 1
            link.status, link.server_id, link.assigned_at = "queued", best, now
            placed += 1
            if link.email is not None:
                budget[link.email] -= 1
        return placed

    def close_requests(self, now: datetime, counts: TickCounts) -> None:
        """Step 6: requests start when a link was dispatched; finish when none is active."""
        for request in self.requests.values():
            if request.status == "pending" and any(
                lk.status in IN_FLIGHT | {"completed"} for lk in self.of_request(request.id)
            ):
                request.status = "running"
                counts.started += 1
        finished = [
            r
            for r in self.requests.values()
            if r.status in ("running", "connecting")
            and self.of_request(r.id)
            and not any(lk.status in ACTIVE or lk.retryable for lk in self.of_request(r.id))
        ]
        for request in finished:
            any_completed = any(lk.status == "completed" for lk in self.of_request(request.id))
            if request.status == "running" and request.connect_config:
                connected, _ = self.connect_links(request, now)
                status = "connecting" if connected else "failed"
            else:
                status = "completed" if any_completed else "failed"
            request.status = status
            counts.finished[status] = counts.finished.get(status, 0) + 1
