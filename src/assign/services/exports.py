"""Export: every link of a request, in the hot table or the archive, as the API shows links
(never a password), page by page so a request of any size streams."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from assign.db import views
from assign.db.repositories import exports as repo
from assign.db.repositories import requests as requests_repo
from assign.db.tables import links, links_archive
from assign.errors import NotFound
from assign.services.context import Context

PAGE = 5000


async def request_links(ctx: Context, *, request_id: uuid.UUID) -> AsyncIterator[dict[str, Any]]:
    """The request's links, oldest first: those in ``links``, then the archived ones."""
    async with ctx.db.read() as conn:
        if await requests_repo.get(conn, request_id) is None:
            raise NotFound("Request not found")
    for table in (links, links_archive):
        after: tuple[Any, Any] | None = None
        while True:
            async with ctx.db.read() as conn:
                rows = await repo.links_page(
                    conn, table, request_id=request_id, after=after, limit=PAGE
                )
            for row in rows:
                yield views.link(row)
            if len(rows) < PAGE:
                break
            after = (rows[-1].created_at, rows[-1].id)
