"""The tool API (``/api/v1/tool``), for the key of a tool server: heartbeat, claim, result."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from assign.client import core
from assign.client import types as t
from assign.client.core import Call, body, data, endpoint, ident, jsonable, payload

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
    def claim(
        self, limit: int = 10, *, wait_seconds: float | None = None
    ) -> Call[list[t.ClaimedLink]]:
        """``POST /links/claim``: up to ``limit`` of this server's queued (then connect) links,
        now running (connecting), each with its account's password. With ``wait_seconds``
        (up to 30), when none is ready the call waits that long for the dispatcher to place
        some (the client's timeout must be longer)."""
        json = payload(limit=limit, wait_seconds=wait_seconds)
        return Call("POST", f"{PREFIX}/links/claim", data, json=json)

    @endpoint
    def report_results(self, results: Sequence[t.ResultItem]) -> Call[t.ResultsAnswer]:
        """``PUT /links/results``: 1 to 1,000 results at once, each applied on its own;
        ``updated`` and each one's ``code`` (200, 404, 409) in the order given."""
        return Call("PUT", f"{PREFIX}/links/results", body, json={"results": jsonable(results)})

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


class ToolClient(core.SyncBase, ToolEndpoints):
    """Tool API client (blocking). ``ToolClient("http://host:8000", server_key)``."""


class AsyncToolClient(core.AsyncBase, ToolEndpoints):
    """Tool API client (asyncio). ``async with AsyncToolClient(url, key) as c: ...``."""
