"""The lifecycle rules of ``domain.states`` turned into SQL, each written once.

The worker API, the dispatcher and the counts all use these expressions, so "retryable",
"closed" and "ready" mean the same everywhere (PRODUCT §9).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from assign.db.tables import links, requests, servers
from assign.domain.states import (
    ASSIGN_SERVICE,
    CLOSED,
    LinkEvent,
    LinkStatus,
    Phase,
    ServerStatus,
    ready_since,
    sources,
)

#: ``states.is_retryable``: a failed link with retries left
RETRYABLE = sa.and_(
    links.c.status.in_(sources(LinkEvent.RETRY)), links.c.retry_count < links.c.max_retries
)
#: ``states.is_exhausted``: a failed link with no retry left
EXHAUSTED = sa.and_(
    links.c.status.in_(sources(LinkEvent.EXHAUST)), links.c.retry_count >= links.c.max_retries
)

#: a link whose create phase completed, whatever its status now (``completed_at`` is set by
#: every completion and never cleared; a connect-phase link completed its create phase)
CREATE_COMPLETED = sa.or_(links.c.phase == Phase.CONNECT, links.c.completed_at.is_not(None))


def request_closed() -> sa.ColumnElement[bool]:
    """``states.is_closed`` of a row of ``requests``."""
    return requests.c.status.in_(sorted(CLOSED))


def of_closed_request() -> sa.ColumnElement[bool]:
    """A link whose request is closed (an index look-up of the request per link)."""
    return sa.exists().where(requests.c.id == links.c.request_id, request_closed())


def of_open_request() -> sa.ColumnElement[bool]:
    """A link whose request is open."""
    return ~of_closed_request()


def server_ready(*, now: datetime, timeout_minutes: float) -> sa.ColumnElement[bool]:
    """``states.is_ready`` of a row of ``servers``: online, a tool server, heartbeat recent."""
    return sa.and_(
        servers.c.status == ServerStatus.ONLINE,
        servers.c.service != ASSIGN_SERVICE,
        servers.c.last_health_check.is_not(None),
        servers.c.last_health_check >= ready_since(now, timeout_minutes),
    )


def failed_of_closed_request() -> Any:
    """Failed links of closed requests: canceled by the dispatcher whatever retries they have."""
    return sa.and_(links.c.status == LinkStatus.FAILED, of_closed_request())
