"""Why a link is waiting: the dispatcher's rules, asked of one link. No I/O.

The rules are the dispatcher's own (``domain.dispatch`` for servers, ``domain.ratelimit`` for
accounts, ``domain.states`` for requests and retries); this module only puts them in the order
§11 of the product answers them in and words the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from assign.domain.dispatch import FreeServer
from assign.domain.ratelimit import Hold
from assign.domain.states import LinkStatus, is_closed, is_ready, is_retryable

#: the service of the servers ``ServerState`` describes (the fleet's tool servers, any name but
#: ``assign``)
TOOL = "tool"

#: "links ahead in line" is counted up to this many, then answered as "more than" (an exact
#: count deep in a queue of millions would cost the queue's length; past a thousand, "more than"
#: says what an operator needs)
AHEAD_CAP = 1_000


@dataclass(frozen=True)
class ServerState:
    """A tool server as the dispatcher sees it."""

    free: FreeServer  # id, priority, free slots, service types
    status: str
    last_health_check: datetime | None


@dataclass(frozen=True)
class Why:
    reason: str | None
    detail: str
    until: datetime | None = None

    def as_dict(self, status: str) -> dict[str, object]:
        out: dict[str, object] = {"status": status, "reason": self.reason}
        if self.until is not None:
            out["until"] = self.until
        out["detail"] = self.detail
        return out


def is_live(server: ServerState, *, now: datetime, timeout: timedelta) -> bool:
    """The dispatcher's ``states.is_ready`` of this tool server: online with a heartbeat within
    the server timeout (one that never sent one is not)."""
    minutes = timeout.total_seconds() / 60
    return is_ready(server.status, TOOL, server.last_health_check, now=now, timeout_minutes=minutes)


def held_by_fleet(
    service_type: str, servers: Sequence[ServerState], *, now: datetime, timeout: timedelta
) -> Why | None:
    """no_server_for_service_type, no_live_server or servers_full, the first that applies."""
    takers = [s for s in servers if s.free.accepts(service_type)]
    if not takers:
        return Why(
            "no_server_for_service_type", f"No tool server accepts service type {service_type}."
        )
    live = [s for s in takers if is_live(s, now=now, timeout=timeout)]
    if not live:
        return Why(
            "no_live_server",
            f"None of the {len(takers)} tool server(s) accepting {service_type} is online "
            "with a recent heartbeat.",
        )
    if all(s.free.free <= 0 for s in live):
        return Why(
            "servers_full",
            f"All {len(live)} live tool server(s) accepting {service_type} have every slot taken.",
        )
    return None


def held_by_account(email: str, found: Hold | None) -> Why | None:
    """daily_limit or cooldown of the link's posting account, or None."""
    if found is None:
        return None
    if found.reason == "daily_limit":
        detail = f"Account {email} has reached its daily limit; it counts again from midnight."
    else:
        detail = f"Account {email} is cooling down since its last dispatch."
    return Why(found.reason, detail, found.until)


def in_line(ahead: int) -> Why:
    """``ahead`` counted up to ``AHEAD_CAP + 1``: more than the cap is "more than"."""
    if ahead > AHEAD_CAP:
        count = f"More than {AHEAD_CAP:,} links are"
    elif ahead == 1:
        count = "1 link is"
    else:
        count = f"{ahead:,} links are"
    return Why("in_line", f"{count} ahead of it in dispatch order.")


def request_closed(request_status: str) -> Why:
    return Why("request_closed", f"Its request is {request_status}: it gets no new work.")


def is_request_closed(request_status: str) -> bool:
    """``states.is_closed``: the dispatcher assigns no link of such a request."""
    return is_closed(request_status)


def not_pending(
    *,
    status: str,
    retry_count: int,
    max_retries: int,
    retry_at: datetime | None,
    request_status: str,
    now: datetime,
) -> Why:
    """The answer for a link that is not pending: retry_backoff for a retryable failure,
    otherwise no reason."""
    if is_retryable(status, retry_count, max_retries):
        if is_request_closed(request_status):
            return request_closed(request_status)
        if retry_at is None or retry_at <= now:
            return Why(
                "retry_backoff", "Its back-off has run out: the next tick retries it.", retry_at
            )
        return Why("retry_backoff", "It failed and waits for its back-off to run out.", retry_at)
    return Why(None, _SETTLED.get(status, f"It is {status}."))


_SETTLED: dict[str, str] = {
    LinkStatus.QUEUED: "It is queued on its server, waiting for the server to claim it.",
    LinkStatus.RUNNING: "Its server is working on it.",
    LinkStatus.CONNECTING: "Its server is working on its connect phase.",
    LinkStatus.CONNECT: "It waits for its server to claim its connect phase.",
    LinkStatus.COMPLETED: "It is completed.",
    LinkStatus.CANCELED: "It is canceled.",
    LinkStatus.FAILED: "It failed and has no retry left; the dispatcher cancels it.",
}
