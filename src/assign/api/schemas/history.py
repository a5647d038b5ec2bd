"""Answers of the history endpoints: a link with its attempts, why it waits, throughput."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from assign.api.schemas.resources import LinkOut, RequestOut

Outcome = Literal["completed", "failed", "stale", "lost", "canceled"]
Reason = Literal[
    "request_closed",
    "no_server_for_service_type",
    "no_live_server",
    "servers_full",
    "daily_limit",
    "cooldown",
    "in_line",
    "retry_backoff",
]


class AttemptOut(BaseModel):
    number: int = Field(description="1 for the link's first claim, then +1")
    phase: Literal["create", "connect"]
    server_id: uuid.UUID | None
    started_at: datetime
    finished_at: datetime | None
    outcome: Outcome | None = Field(description="null while the attempt runs")
    error: str | None
    profile_url: str | None
    post_url: str | None


class LinkWithAttemptsOut(LinkOut):
    attempts: list[AttemptOut] = Field(description="oldest first")


class ExplainOut(BaseModel):
    status: str
    reason: Reason | None = Field(description="what holds the link now; null when nothing does")
    until: datetime | None = Field(
        None, description="when the reason ends (daily_limit, cooldown, retry_backoff)"
    )
    detail: str = Field(description="one plain sentence")


class ThroughputOut(BaseModel):
    minute: datetime = Field(description="start of the minute")
    key: uuid.UUID = Field(description="server or request id")
    completed: int
    failed: int = Field(description="failed results, stale timeouts and lost servers")


class RequestWithEtaOut(RequestOut):
    eta: datetime | None = Field(
        description="expected completion of an open request; null when closed or unknown"
    )
