"""The worker API (``/api/v1/worker``, the seed), for the key of an ``assign`` server."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from assign.client import core
from assign.client import types as t
from assign.client.core import (
    Call,
    body,
    data,
    endpoint,
    field,
    idempotent,
    ident,
    jsonable,
    payload,
    query,
)

PREFIX = "/api/v1/worker"
Id = str | uuid.UUID
Statuses = str | Sequence[str]


class WorkerEndpoints:
    """Every endpoint of the worker API; see :mod:`assign.client.core` for how they are sent."""

    # --- servers ---------------------------------------------------------------------------

    @endpoint
    def list_servers(
        self, *, status: Statuses | None = None, inactive_minutes: float | None = None
    ) -> Call[list[t.Server]]:
        """``GET /servers``: servers and their health."""
        params = query(status=status, inactive_minutes=inactive_minutes)
        return Call("GET", f"{PREFIX}/servers", data, params)

    @endpoint
    def available_servers(
        self, *, status: Statuses | None = None, service: str | None = None
    ) -> Call[list[t.Server]]:
        """``GET /servers/available``: servers with a free slot (``avail_slots``)."""
        params = query(status=status, service=service)
        return Call("GET", f"{PREFIX}/servers/available", data, params)

    @endpoint
    def set_server_status(self, server_id: Id, status: t.ServerStatus) -> Call[t.Server]:
        """``PUT /servers/:id/status``."""
        path = f"{PREFIX}/servers/{ident(server_id)}/status"
        return Call("PUT", path, data, json={"status": status})

    # --- requests --------------------------------------------------------------------------

    @endpoint
    def list_requests(
        self,
        *,
        status: Statuses | None = None,
        service_type: str | None = None,
        type_request: str | None = None,
        limit: int | None = None,
    ) -> Call[list[t.Request]]:
        """``GET /requests``: by default the ``pending`` and ``running`` ones."""
        params = query(
            status=status, service_type=service_type, type_request=type_request, limit=limit
        )
        return Call("GET", f"{PREFIX}/requests", data, params)

    @endpoint
    def completable_requests(
        self,
        *,
        status: Statuses | None = None,
        type: str | None = None,
        all_links_done: bool | None = None,
        no_active_links: bool | None = None,
        limit: int | None = None,
    ) -> Call[list[t.Request]]:
        """``GET /requests/completable``: requests none of whose links is still active."""
        params = query(
            status=status,
            type=type,
            all_links_done=all_links_done,
            no_active_links=no_active_links,
            limit=limit,
        )
        return Call("GET", f"{PREFIX}/requests/completable", data, params)

    @endpoint
    def count_links(self, request_id: Id) -> Call[t.LinkCounts]:
        """``GET /requests/:id/links/count``: a request's links by status."""
        return Call("GET", f"{PREFIX}/requests/{ident(request_id)}/links/count", body)

    @endpoint
    def set_request_status(self, request_id: Id, status: t.RequestStatus) -> Call[t.Request]:
        """``PUT /requests/:id/status`` (timestamps follow the status)."""
        path = f"{PREFIX}/requests/{ident(request_id)}/status"
        return Call("PUT", path, data, json={"status": status})

    @endpoint
    def connect_request(self, request_id: Id) -> Call[t.ConnectResult]:
        """``PUT /requests/:id/connect``: into the connect phase."""
        return Call("PUT", f"{PREFIX}/requests/{ident(request_id)}/connect", body)

    @endpoint
    def complete_request(self, request_id: Id) -> Call[bool]:
        """``PUT /requests/:id/complete``: its pending/queued links are canceled."""
        return Call("PUT", f"{PREFIX}/requests/{ident(request_id)}/complete", field("updated"))

    # --- links -----------------------------------------------------------------------------

    @endpoint
    def list_links(
        self,
        *,
        status: Statuses | None = None,
        service_type: str | None = None,
        stale: bool | None = None,
        timeout_minutes: float | None = None,
        request_id: Id | None = None,
        server_id: Id | None = None,
        limit: int | None = None,
    ) -> Call[list[t.Link]]:
        """``GET /links``: pending links without a server by default; ``stale=True`` for the
        running/connecting ones older than ``timeout_minutes``."""
        params = query(
            status=status,
            service_type=service_type,
            stale=stale,
            timeout_minutes=timeout_minutes,
            request_id=request_id,
            server_id=server_id,
            limit=limit,
        )
        return Call("GET", f"{PREFIX}/links", data, params)

    @endpoint
    def assign_link(self, link_id: Id, server_id: Id) -> Call[t.Link]:
        """``PUT /links/:id/assign``: a pending link to a server (409 when not possible)."""
        path = f"{PREFIX}/links/{ident(link_id)}/assign"
        return Call("PUT", path, data, json={"server_id": str(server_id)})

    @endpoint
    def create_links(
        self,
        links: Sequence[t.LinkCreate | dict[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> Call[int]:
        """``POST /links/bulk``: 1 to 5,000 links, all or none; the number created. With an
        ``idempotency_key``, sending the same batch again (after a timeout) creates it once."""
        json = {"links": jsonable(list(links))}
        headers = idempotent(idempotency_key)
        return Call("POST", f"{PREFIX}/links/bulk", field("created"), json=json, headers=headers)

    @endpoint
    def retryable_links(
        self,
        *,
        service_type: str | None = None,
        request_id: Id | None = None,
        limit: int | None = None,
    ) -> Call[list[t.Link]]:
        """``GET /links/retryable``: failed links with retries left."""
        params = query(service_type=service_type, request_id=request_id, limit=limit)
        return Call("GET", f"{PREFIX}/links/retryable", data, params)

    @endpoint
    def retry_link(self, link_id: Id) -> Call[t.Link]:
        """``PUT /links/:id/retry``: a retryable failed link back to pending."""
        return Call("PUT", f"{PREFIX}/links/{ident(link_id)}/retry", data)

    @endpoint
    def bulk_retry(self, link_ids: Sequence[Id]) -> Call[int]:
        """``PUT /links/bulk-retry``: the number of links put back."""
        json = {"link_ids": [str(i) for i in link_ids]}
        return Call("PUT", f"{PREFIX}/links/bulk-retry", field("updated"), json=json)

    @endpoint
    def mark_final_failed(self, *, request_id: Id | None = None) -> Call[int]:
        """``PUT /links/mark-final-failed``: exhausted failed links -> canceled; how many."""
        json = payload(request_id=request_id)
        return Call("PUT", f"{PREFIX}/links/mark-final-failed", field("updated"), json=json)

    @endpoint
    def account_stats(self, email: str, *, request_id: Id | None = None) -> Call[t.AccountStats]:
        """``GET /links/account-stats`` of one posting account."""
        params = query(email=email, request_id=request_id)
        return Call("GET", f"{PREFIX}/links/account-stats", body, params)

    # --- other resources -------------------------------------------------------------------

    @endpoint
    def list_sites(
        self,
        *,
        type: str | None = None,
        active: bool | None = None,
        ids: Sequence[Id] | None = None,
        limit: int | None = None,
    ) -> Call[list[t.Site]]:
        """``GET /sites``."""
        params = query(type=type, active=active, ids=ids, limit=limit)
        return Call("GET", f"{PREFIX}/sites", data, params)

    @endpoint
    def list_accounts(
        self,
        *,
        group_id: Id | None = None,
        status: Statuses | None = None,
        limit: int | None = None,
    ) -> Call[list[t.AccountWithPassword]]:
        """``GET /accounts``: posting accounts, with their passwords."""
        params = query(group_id=group_id, status=status, limit=limit)
        return Call("GET", f"{PREFIX}/accounts", data, params)

    @endpoint
    def get_settings(self, group: str) -> Call[dict[str, str]]:
        """``GET /settings?group=G``: the group's settings (``{}`` for an unknown group)."""
        return Call("GET", f"{PREFIX}/settings", field("settings"), query(group=group))


class AssignClient(core.SyncBase, WorkerEndpoints):
    """Worker API client (blocking). ``AssignClient("http://host:8000", key)``."""


class AsyncAssignClient(core.AsyncBase, WorkerEndpoints):
    """Worker API client (asyncio). ``async with AsyncAssignClient(url, key) as c: ...``."""
