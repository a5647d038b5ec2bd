"""The admin API (``/api/v1/admin``), for an admin key; plus the service's own ``/readyz`` and
``/metrics``, which need no key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from assign.client import core
from assign.client import types as t
from assign.client.core import (
    Call,
    body,
    data,
    endpoint,
    idempotent,
    ident,
    jsonable,
    payload,
    query,
)

PREFIX = "/api/v1/admin"
Id = str | uuid.UUID
Statuses = str | Sequence[str]


def parse_metrics(response: httpx.Response) -> dict[str, float]:
    """Prometheus text -> ``{sample: value}``: each sample as printed (``name{label="x"}``),
    and a labelled one also summed under its bare name."""
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.rpartition(" ")
        try:
            value = float(raw)
        except ValueError:
            continue
        samples[key] = value
        name = key.split("{", 1)[0]
        if name != key:
            samples[name] = samples.get(name, 0.0) + value
    return samples


class AdminEndpoints:
    """The admin API's endpoints; see :mod:`assign.client.core` for how they are sent."""

    # --- servers ---------------------------------------------------------------------------

    @endpoint
    def create_server(
        self,
        name: str,
        *,
        service: str = "tool",
        max_threads: int | None = None,
        priority: int | None = None,
        status: t.ServerStatus | None = None,
        ip: str | None = None,
        service_types: Sequence[t.ServiceType] | None = None,
        idempotency_key: str | None = None,
    ) -> Call[t.ServerWithKey]:
        """``POST /servers``: the server with its ``api_key``, shown this once. Every admin create
        takes an ``idempotency_key``: sent again with it, the create runs once."""
        json = payload(
            name=name,
            service=service,
            max_threads=max_threads,
            priority=priority,
            status=status,
            ip=ip,
            service_types=list(service_types) if service_types is not None else None,
        )
        return Call(
            "POST", f"{PREFIX}/servers", data, json=json, headers=idempotent(idempotency_key)
        )

    @endpoint
    def list_servers(
        self, *, status: Statuses | None = None, service: str | None = None
    ) -> Call[list[t.Server]]:
        """``GET /servers``: every server."""
        return Call("GET", f"{PREFIX}/servers", data, query(status=status, service=service))

    @endpoint
    def get_server(self, server_id: Id) -> Call[t.Server]:
        return Call("GET", f"{PREFIX}/servers/{ident(server_id)}", data)

    @endpoint
    def update_server(self, server_id: Id, **changes: Any) -> Call[t.Server]:
        """``PATCH /servers/:id`` with the given fields (name, ip, max_threads, priority,
        status, service_types)."""
        return Call("PATCH", f"{PREFIX}/servers/{ident(server_id)}", data, json=jsonable(changes))

    @endpoint
    def delete_server(self, server_id: Id) -> Call[bool]:
        """``DELETE /servers/:id``: 409 while it has work."""
        return Call("DELETE", f"{PREFIX}/servers/{ident(server_id)}", lambda r: r.json()["updated"])

    # --- requests --------------------------------------------------------------------------

    @endpoint
    def create_request(
        self,
        service_type: t.ServiceType,
        name: str,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Call[t.Request]:
        """``POST /requests`` (optional fields: website, user_id, group_id, auction_price,
        target, type_request, priority, status, config, data, folder_urls)."""
        json = payload(service_type=service_type, name=name, **fields)
        headers = idempotent(idempotency_key)
        return Call("POST", f"{PREFIX}/requests", data, json=json, headers=headers)

    @endpoint
    def list_requests(
        self,
        *,
        status: Statuses | None = None,
        service_type: str | None = None,
        limit: int | None = None,
    ) -> Call[list[t.Request]]:
        """``GET /requests``: every status unless filtered."""
        params = query(status=status, service_type=service_type, limit=limit)
        return Call("GET", f"{PREFIX}/requests", data, params)

    @endpoint
    def get_request(self, request_id: Id) -> Call[t.Request]:
        return Call("GET", f"{PREFIX}/requests/{ident(request_id)}", data)

    @endpoint
    def update_request(self, request_id: Id, **changes: Any) -> Call[t.Request]:
        """``PATCH /requests/:id`` with the given fields."""
        return Call("PATCH", f"{PREFIX}/requests/{ident(request_id)}", data, json=jsonable(changes))

    # --- sites, accounts, settings, stats --------------------------------------------------

    @endpoint
    def create_site(
        self, name: str, type: t.ServiceType, *, idempotency_key: str | None = None, **fields: Any
    ) -> Call[t.Site]:
        """``POST /sites`` (optional: active, config)."""
        json = payload(name=name, type=type, **fields)
        return Call("POST", f"{PREFIX}/sites", data, json=json, headers=idempotent(idempotency_key))

    @endpoint
    def create_account(
        self, group_id: Id, email: str, *, idempotency_key: str | None = None, **fields: Any
    ) -> Call[t.Account]:
        """``POST /accounts`` (optional: username, password, status)."""
        json = payload(group_id=group_id, email=email, **fields)
        headers = idempotent(idempotency_key)
        return Call("POST", f"{PREFIX}/accounts", data, json=json, headers=headers)

    @endpoint
    def get_settings(self, group: str) -> Call[dict[str, str]]:
        return Call("GET", f"{PREFIX}/settings/{group}", lambda r: r.json()["settings"])

    @endpoint
    def put_settings(self, group: str, settings: dict[str, Any]) -> Call[dict[str, str]]:
        """``PUT /settings/:group``: merges; the whole group after the merge."""
        json = {"settings": settings}
        return Call("PUT", f"{PREFIX}/settings/{group}", lambda r: r.json()["settings"], json=json)

    @endpoint
    def stats(self) -> Call[t.Stats]:
        """``GET /stats``: links, requests and servers counted by state."""
        return Call("GET", f"{PREFIX}/stats", body)

    # --- the service -----------------------------------------------------------------------

    @endpoint
    def ready(self) -> Call[dict[str, Any]]:
        """``GET /readyz``: raises :class:`ApiError` (503) while the database does not answer."""
        return Call("GET", "/readyz", body)

    @endpoint
    def metrics(self) -> Call[dict[str, float]]:
        """``GET /metrics`` as ``{sample: value}`` (see :func:`parse_metrics`)."""
        return Call("GET", "/metrics", parse_metrics)


class AdminClient(core.SyncBase, AdminEndpoints):
    """Admin API client (blocking)."""


class AsyncAdminClient(core.AsyncBase, AdminEndpoints):
    """Admin API client (asyncio)."""
