"""The link and request state machines: one table each, no I/O.

Every SQL transition in ``assign.db`` takes its from-states and to-state from here,
so the rules live in exactly one place.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


class LinkStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    CONNECT = "connect"
    CONNECTING = "connecting"


class Phase(StrEnum):
    CREATE = "create"
    CONNECT = "connect"


class RequestStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    CONNECTING = "connecting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class ServerStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    BANNED = "banned"


SERVICE_TYPES = ("entity", "social", "blog20", "stacking", "podcast", "indexing")
ASSIGN_SERVICE = "assign"

L = LinkStatus

#: Links that hold a slot of their server (counted in ``servers.active_tasks``).
IN_FLIGHT: frozenset[LinkStatus] = frozenset({L.QUEUED, L.RUNNING, L.CONNECTING})
#: Links a server is working on right now (stale candidates, lost with their server).
WORKING: frozenset[LinkStatus] = frozenset({L.RUNNING, L.CONNECTING})
#: Links still to be done by somebody (plus retryable failures, see ``is_active``).
ACTIVE: frozenset[LinkStatus] = frozenset({L.PENDING, L.QUEUED, L.RUNNING, L.CONNECT, L.CONNECTING})
#: Links not yet dispatched or dispatched and unfinished (``no_active_links`` / pending_count).
UNFINISHED: frozenset[LinkStatus] = frozenset({L.PENDING, L.QUEUED, L.RUNNING})
#: Links bound to a server (``connect`` keeps its server but holds no slot).
ON_SERVER: frozenset[LinkStatus] = frozenset({L.QUEUED, L.RUNNING, L.CONNECT, L.CONNECTING})
TERMINAL: frozenset[LinkStatus] = frozenset({L.COMPLETED, L.CANCELED})


class LinkEvent(StrEnum):
    ASSIGN = "assign"  # dispatcher or PUT /links/:id/assign
    CLAIM = "claim"  # tool server takes its work
    SUCCEED = "succeed"  # result completed
    FAIL = "fail"  # result failed, stale timeout, server lost
    RELEASE = "release"  # server went offline/maintenance before starting
    RETRY = "retry"  # failed and retryable, back to the queue
    EXHAUST = "exhaust"  # failed with no retries left (mark-final-failed)
    CONNECT = "connect"  # request entered its connect phase
    CANCEL = "cancel"  # request completed/connected without this link


#: event -> {from_status: to_status}
LINK_TRANSITIONS: dict[LinkEvent, dict[LinkStatus, LinkStatus]] = {
    LinkEvent.ASSIGN: {L.PENDING: L.QUEUED},
    LinkEvent.CLAIM: {L.QUEUED: L.RUNNING, L.CONNECT: L.CONNECTING},
    LinkEvent.SUCCEED: {L.RUNNING: L.COMPLETED, L.CONNECTING: L.COMPLETED},
    LinkEvent.FAIL: {L.RUNNING: L.FAILED, L.CONNECTING: L.FAILED},
    LinkEvent.RELEASE: {L.QUEUED: L.PENDING},
    # a create-phase link goes back to pending (server cleared), a connect-phase one to connect
    LinkEvent.RETRY: {L.FAILED: L.PENDING},
    LinkEvent.EXHAUST: {L.FAILED: L.CANCELED},
    LinkEvent.CONNECT: {L.COMPLETED: L.CONNECT},
    LinkEvent.CANCEL: {s: L.CANCELED for s in LinkStatus if s is not L.CANCELED},
}


class IllegalTransition(ValueError):
    """The event does not apply to a link in this state."""


def sources(event: LinkEvent) -> tuple[str, ...]:
    """The statuses an event applies to, as plain strings for SQL ``IN`` lists."""
    return tuple(sorted(LINK_TRANSITIONS[event]))


def next_status(
    status: LinkStatus | str, event: LinkEvent, phase: Phase | str = Phase.CREATE
) -> LinkStatus:
    """The status a link in ``status`` moves to on ``event``; raises IllegalTransition."""
    table = LINK_TRANSITIONS[event]
    current = LinkStatus(status)
    if current not in table:
        raise IllegalTransition(f"cannot {event.value} a link that is {current.value}")
    if event is LinkEvent.RETRY and Phase(phase) is Phase.CONNECT:
        return L.CONNECT
    return table[current]


def slot_delta(before: LinkStatus | str, after: LinkStatus | str) -> int:
    """How ``active_tasks`` of the link's server changes when it moves from ``before`` to ``after``."""
    return int(LinkStatus(after) in IN_FLIGHT) - int(LinkStatus(before) in IN_FLIGHT)


def is_retryable(status: str, retry_count: int, max_retries: int) -> bool:
    """A link is retryable: ``failed`` with retries left (``db.rules.RETRYABLE`` in SQL)."""
    return status == L.FAILED and retry_count < max_retries


def is_exhausted(status: str, retry_count: int, max_retries: int) -> bool:
    return status == L.FAILED and retry_count >= max_retries


R = RequestStatus
#: A request is closed: it gets no new work (PRODUCT §9). ``db.rules.request_closed`` in SQL.
CLOSED: frozenset[RequestStatus] = frozenset({R.COMPLETED, R.FAILED, R.CANCELED})
REQUEST_FINAL = CLOSED
#: Links that closing a request cancels at once (nobody works on them yet).
CANCELED_ON_CLOSE: frozenset[LinkStatus] = frozenset({L.PENDING, L.QUEUED, L.CONNECT})


def is_closed(status: RequestStatus | str) -> bool:
    """Whether a request in ``status`` is closed (completed, failed or canceled)."""
    return RequestStatus(status) in CLOSED


def is_ready(
    status: ServerStatus | str,
    service: str,
    last_health_check: datetime | None,
    *,
    now: datetime,
    timeout_minutes: float,
) -> bool:
    """A server is ready for the dispatcher's work: an ``online`` tool server whose last
    heartbeat is within the server timeout (never one that sent none). ``db.rules.server_ready``
    in SQL."""
    return (
        ServerStatus(status) is ServerStatus.ONLINE
        and service != ASSIGN_SERVICE
        and last_health_check is not None
        and last_health_check >= ready_since(now, timeout_minutes)
    )


def ready_since(now: datetime, timeout_minutes: float) -> datetime:
    """The oldest heartbeat of a ready server."""
    return now - timedelta(minutes=timeout_minutes)


def request_timestamps(status: RequestStatus | str) -> tuple[bool, bool, bool]:
    """(sets started_at if unset, sets completed_at, clears completed_at) for a request entering
    ``status``: closing sets it, reopening (pending or running) clears it."""
    s = RequestStatus(status)
    return s is R.RUNNING, s in CLOSED, s in (R.PENDING, R.RUNNING)
