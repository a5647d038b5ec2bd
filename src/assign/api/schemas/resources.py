"""Response schemas of servers, requests, links, sites and accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from assign.domain.states import AccountStatus, LinkStatus, RequestStatus, ServerStatus


class ServerOut(BaseModel):
    id: uuid.UUID
    name: str
    ip: str | None
    service: str
    status: ServerStatus
    active_threads: int
    active_tasks: int = Field(description="links queued, running or connecting on it")
    max_threads: int
    priority: int
    service_types: list[str] = Field(description="link service types it accepts; empty = all")
    avail_slots: int = Field(description="max_threads - active_tasks")
    last_health_check: datetime | None
    last_active: datetime | None
    created_at: datetime
    updated_at: datetime


class ServerWithKeyOut(ServerOut):
    api_key: str = Field(description="shown only in this response")


class RequestOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID | None
    service_type: str
    group_id: uuid.UUID | None
    name: str
    website: str | None
    auction_price: float | None
    target: int | None
    created_links: int
    status: RequestStatus
    type_request: str
    priority: int
    config: Any | None
    data: Any | None
    folder_urls: Any | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LinkOut(BaseModel):
    id: uuid.UUID
    request_id: uuid.UUID
    service_type: str
    server_id: uuid.UUID | None
    site_id: uuid.UUID | None
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
    details: Any | None
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ClaimedLinkOut(LinkOut):
    password: str | None = Field(description="the posting account's password, for this server only")


class SiteOut(BaseModel):
    id: uuid.UUID
    name: str
    type: str
    active: bool
    config: Any | None
    created_at: datetime
    updated_at: datetime


class AccountOut(BaseModel):
    id: uuid.UUID
    group_id: uuid.UUID
    email: str
    username: str | None
    status: AccountStatus
    created_at: datetime
    updated_at: datetime


class AccountWithPasswordOut(AccountOut):
    password: str | None


class StatusCount(BaseModel):
    status: LinkStatus
    count: int


class LinkCountsOut(BaseModel):
    success: Literal[True] = True
    request_id: uuid.UUID
    counts: list[StatusCount]
    total: int
    profile_count: int
    post_count: int


class ConnectOut(BaseModel):
    success: Literal[True] = True
    updated: bool
    links_connect: int
    links_canceled: int


class CompleteOut(BaseModel):
    success: Literal[True] = True
    updated: bool


class CreatedOut(BaseModel):
    success: Literal[True] = True
    created: int


class AccountStatsOut(BaseModel):
    success: Literal[True] = True
    email: str
    pending_count: int
    today_count: int
    total_completed: int
    last_post_at: datetime | None
    request_pending: int
    request_completed: int


class SettingsOut(BaseModel):
    success: Literal[True] = True
    group: str
    settings: dict[str, str]
