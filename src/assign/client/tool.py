"""The tool API (``/api/v1/tool``), for the key of a tool server: heartbeat, claim, result."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from assign.client import types as t
from assign.client.core import AsyncBase, Call, SyncBase, data, endpoint, ident, payload

PREFIX = "/api/v1/tool"


class ToolEndpoints:
    """Every endpoint of the tool API; see :mod:`assign.client.core` for how they are sent."""

    @endpoint
    def heartbeat(self, *, active_threads: int | None = None) -> Call[t.Server]:
        """``POST /heartbeat``: this server is alive (an offline one comes back online)."""
        return Call(
            "POST", f"{PREFIX}/heartbeat", data, json=payload(active_threads=active_threads)
        )

    @endpoint
    def claim(self, limit: int = 10) -> Call[list[t.ClaimedLink]]:
        """``POST /links/claim``: up to ``limit`` of this server's queued (then connect) links,
        now running (connecting), each with its account's password."""
        return Call("POST", f"{PREFIX}/links/claim", data, json={"limit": limit})

    @endpoint
    def report_result(
        self,
        link_id: str | uuid.UUID,
        status: Literal["completed", "failed"],
        *,
        profile_url: str | None = None,
        post_url: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Call[t.Link]:
        """``PUT /links/:id/result`` of a running/connecting link of this server."""
        json = payload(
            status=status, profile_url=profile_url, post_url=post_url, error=error, details=details
        )
        return Call("PUT", f"{PREFIX}/links/{ident(link_id)}/result", data, json=json)

    @endpoint
    def get_link(self, link_id: str | uuid.UUID) -> Call[t.Link]:
        """``GET /links/:id``: one of this server's links (404 for another server's)."""
        return Call("GET", f"{PREFIX}/links/{ident(link_id)}", data)


class ToolClient(SyncBase, ToolEndpoints):
    """Tool API client (blocking). ``ToolClient("http://host:8000", server_key)``."""


class AsyncToolClient(AsyncBase, ToolEndpoints):
    """Tool API client (asyncio). ``async with AsyncToolClient(url, key) as c: ...``."""
