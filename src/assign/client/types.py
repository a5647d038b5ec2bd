"""Shapes of what the client sends and returns: plain dicts of JSON, typed for editors and mypy.

Ids are UUID strings, timestamps RFC 3339 UTC strings (``2025-12-01T10:00:00Z``) or None.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

ServiceType = Literal["entity", "social", "blog20", "stacking", "podcast", "indexing"]
ServerStatus = Literal["online", "offline", "maintenance"]
RequestStatus = Literal["pending", "running", "connecting", "completed", "failed", "canceled"]
LinkStatus = Literal[
    "pending", "queued", "running", "completed", "failed", "canceled", "connect", "connecting"
]
AccountStatus = Literal["active", "inactive", "banned"]


class Server(TypedDict):
    id: str
    name: str
    ip: str | None
    service: str
    status: ServerStatus
    active_threads: int
    active_tasks: int
    max_threads: int
    priority: int
    service_types: list[str]
    avail_slots: int
    last_health_check: str | None
    last_active: str | None
    created_at: str
    updated_at: str


class ServerWithKey(Server):
    api_key: str


class Request(TypedDict):
    id: str
    user_id: str | None
    service_type: str
    group_id: str | None
    name: str
    website: str | None
    auction_price: float | None
    target: int | None
    created_links: int
    status: RequestStatus
    type_request: str
    priority: int
    config: Any
    data: Any
    folder_urls: Any
    started_at: str | None
    completed_at: str | None
    created_at: str
    updated_at: str


class Link(TypedDict):
    id: str
    request_id: str
    service_type: str
    server_id: str | None
    site_id: str | None
    site_name: str | None
    email: str | None
    username: str | None
    about: str | None
    status: LinkStatus
    phase: Literal["create", "connect"]
    retry_count: int
    max_retries: int
    error: str | None
    profile_url: str | None
    post_url: str | None
    details: Any
    assigned_at: str | None
    started_at: str | None
    completed_at: str | None
    created_at: str
    updated_at: str


class ClaimedLink(Link):
    password: str | None


class ResultItem(TypedDict, total=False):
    """One result of ``PUT /links/results``."""

    id: Required[str]
    status: Required[Literal["completed", "failed"]]
    profile_url: str
    post_url: str
    error: str
    details: dict[str, Any]


class ResultCode(TypedDict):
    id: str
    code: int  # 200 applied, 404 not this server's link, 409 not running or connecting
    error: NotRequired[str]


class ResultsAnswer(TypedDict):
    """``PUT /links/results``: how many were applied, and each result's code in order."""

    updated: int
    data: list[ResultCode]


class LinkCreate(TypedDict, total=False):
    """One link of ``POST /links/bulk``."""

    request_id: Required[str]
    service_type: Required[ServiceType]
    server_id: str
    site_id: str
    site_name: str
    email: str
    username: str
    password: str
    about: str
    max_retries: int
    details: dict[str, Any]


class StatusCount(TypedDict):
    status: LinkStatus
    count: int


class LinkCounts(TypedDict):
    request_id: str
    counts: list[StatusCount]
    total: int
    profile_count: int
    post_count: int


class ConnectResult(TypedDict):
    updated: bool
    links_connect: int
    links_canceled: int


class AccountStats(TypedDict):
    email: str
    pending_count: int
    today_count: int
    total_completed: int
    last_post_at: str | None
    request_pending: int
    request_completed: int


class Site(TypedDict):
    id: str
    name: str
    type: str
    active: bool
    config: Any
    created_at: str
    updated_at: str


class Account(TypedDict):
    id: str
    group_id: str
    email: str
    username: str | None
    status: AccountStatus
    created_at: str
    updated_at: str


class AccountWithPassword(Account):
    password: NotRequired[str | None]


class Stats(TypedDict):
    """Counts by state (``GET /api/v1/admin/stats``)."""

    links: dict[str, int]
    requests: dict[str, int]
    servers: dict[str, int]
