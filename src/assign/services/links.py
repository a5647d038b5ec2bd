"""Use cases of links on the worker API: bulk create, listings, assign, retry, account stats."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, Unpack

from sqlalchemy.ext.asyncio import AsyncConnection

from assign import metrics
from assign.db import views
from assign.db.json import JSONArray
from assign.db.repositories import archive
from assign.db.repositories import catalog as catalog_repo
from assign.db.repositories import links as repo
from assign.db.repositories import requests as requests_repo
from assign.db.repositories import servers as servers_repo
from assign.domain.filters import LinkScope
from assign.domain.ratelimit import start_of_day
from assign.domain.states import ASSIGN_SERVICE, LinkStatus, Phase, ServerStatus, is_closed
from assign.errors import Conflict, InvalidInput, NotFound, existing
from assign.services import reads, wake
from assign.services.context import Context


class NewLink(Protocol):
    """A link to create, as the API read it (``LinkIn`` or the bulk body's fast reader)."""

    # read-only members, so that narrower types (a Literal service type) fit
    @property
    def request_id(self) -> uuid.UUID: ...
    @property
    def service_type(self) -> str: ...
    @property
    def server_id(self) -> uuid.UUID | None: ...
    @property
    def site_id(self) -> uuid.UUID | None: ...
    @property
    def site_name(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def about(self) -> str | None: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def details(self) -> Mapping[str, Any] | None: ...


async def create_links(ctx: Context, *, items: Sequence[NewLink]) -> int:
    """Insert all links or none; a link with ``server_id`` starts queued on that server."""
    now = ctx.clock.now()
    pending, queued, create = LinkStatus.PENDING, LinkStatus.QUEUED, Phase.CREATE

    async def work(conn: AsyncConnection) -> int:
        # keyed by the UUIDs' integers: hashing a uuid.UUID runs Python code, 5,000 times a batch
        request_ints = [i.request_id.int for i in items]
        # lock order: servers, then requests (FOR KEY SHARE: neither deleted nor closed meanwhile)
        usable = await servers_repo.lock_placeable(
            conn, [i.server_id for i in items if i.server_id is not None]
        )
        found = await requests_repo.lock_for_links(
            conn, [uuid.UUID(int=n) for n in set(request_ints)]
        )
        _check_references(items, request_ints, found, usable, await _sites(conn, items))
        priorities = {request_id.int: priority for request_id, (priority, _) in found.items()}
        load = Counter(i.server_id for i in items if i.server_id is not None)
        ids = repo.new_ids(len(items))
        passwords = ctx.cipher.encrypt_many([i.password for i in items])
        prepared = zip(ids, items, request_ints, passwords, strict=True)

        def records() -> Iterator[tuple[Any, ...]]:
            # built while the COPY streams (repo.insert_many), in repo.INSERT_COLUMNS order
            for link_id, item, request_int, password in prepared:
                server_id = item.server_id
                placed = server_id is not None
                yield (
                    link_id,
                    item.request_id,
                    item.service_type,
                    server_id,
                    item.site_id,
                    item.site_name,
                    item.email,
                    item.username,
                    password,
                    item.about,
                    queued if placed else pending,
                    create,
                    priorities[request_int],
                    0,
                    item.max_retries,
                    item.details,
                    now if placed else None,
                    now,
                    now,
                )

        await repo.insert_many(conn, records())
        await servers_repo.add_tasks(conn, load.items())
        await wake.notify(ctx, conn)
        return len(items)

    created = await ctx.db.run(work)
    metrics.links_created.inc(created)
    return created


async def _sites(conn: AsyncConnection, items: Sequence[NewLink]) -> set[uuid.UUID]:
    named = [i.site_id for i in items if i.site_id is not None]
    return await catalog_repo.existing_site_ids(conn, named) if named else set()


def _check_references(
    items: Sequence[NewLink],
    request_ints: Sequence[int],
    found: Mapping[uuid.UUID, tuple[int, str]],
    usable: set[uuid.UUID],
    sites: set[uuid.UUID],
) -> None:
    """400 naming each link whose request, server or site does not exist (a server: or is an
    assign server); else 409 naming each link of a closed request."""
    statuses = {request_id.int: status for request_id, (_, status) in found.items()}
    shut = {n for n, status in statuses.items() if is_closed(status)}
    missing, closed = [], []
    for index, (item, request_int) in enumerate(zip(items, request_ints, strict=True)):
        status = statuses.get(request_int)
        if status is None:
            missing.append({"field": f"links[{index}].request_id", "message": "request not found"})
        elif request_int in shut:
            closed.append(
                {"field": f"links[{index}].request_id", "message": f"request is {status}"}
            )
        if item.server_id is not None and item.server_id not in usable:
            missing.append(
                {
                    "field": f"links[{index}].server_id",
                    "message": "server not found or not a tool server",
                }
            )
        if item.site_id is not None and item.site_id not in sites:
            missing.append({"field": f"links[{index}].site_id", "message": "site not found"})
    if missing:
        raise InvalidInput(
            f"{len(missing)} link(s) refer to unknown requests, servers or sites", missing[:100]
        )
    if closed:
        raise Conflict(
            f"{len(closed)} link(s) belong to a closed request, which takes no new links",
            closed[:100],
        )


async def list_links(
    ctx: Context, *, statuses: list[str], **scope: Unpack[LinkScope]
) -> list[dict[str, Any]] | JSONArray:
    """The links as dicts, or on PostgreSQL already encoded as a JSON array by the database."""
    async with ctx.db.read() as conn:
        find = repo.link_listing(conn)  # on PostgreSQL, encoded by the database
        found = await find(conn, statuses=statuses, **scope)
    if isinstance(found, JSONArray):
        return found
    return [views.link(r) for r in found]


_stale = reads.listing(repo.list_stale, views.link)


async def list_stale(
    ctx: Context, *, timeout_minutes: float, **scope: Unpack[LinkScope]
) -> list[dict[str, Any]]:
    before = ctx.clock.now() - timedelta(minutes=timeout_minutes)
    return await _stale(ctx, started_before=before, **scope)


list_retryable = reads.listing(repo.list_retryable, views.link)


async def assign_link(ctx: Context, *, link_id: uuid.UUID, server_id: uuid.UUID) -> dict[str, Any]:
    """Pending link -> queued on the server, taking one of its slots; 409 when either can't."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        # lock order: the link, the server, then its request (a close waits, or went first)
        link = await repo.get(conn, link_id, lock=True)
        if link is None:
            raise NotFound("Link not found")
        server = await servers_repo.get(conn, server_id, lock=True)
        if server is None:
            raise NotFound("Server not found")
        if link.status != LinkStatus.PENDING:
            raise Conflict(f"Link is {link.status}; only a pending link can be assigned")
        if server.service == ASSIGN_SERVICE:
            raise Conflict("Server is an assign server and takes no links")
        if server.status != ServerStatus.ONLINE:
            raise Conflict(f"Server is {server.status}; only an online server takes links")
        if not servers_repo.accepts(server.service_types, link.service_type):
            raise Conflict(f"Server does not accept service type {link.service_type}")
        if server.active_tasks >= server.max_threads:
            raise Conflict("Server has no free slot")
        request = await requests_repo.get(conn, link.request_id, share=True)
        if request is not None and is_closed(request.status):
            raise Conflict(f"Request is {request.status}; a closed request takes no new work")
        await servers_repo.add_tasks(conn, [(server_id, 1)])
        row = await repo.assign(conn, link_id=link_id, server_id=server_id, now=now)
        if row is None:
            raise Conflict("Link is no longer pending")
        await wake.links_ready(ctx, conn, [server_id])  # a claim waiting on the server takes it
        return views.link(row)

    return await ctx.db.run(work)


async def retry_link(ctx: Context, *, link_id: uuid.UUID) -> dict[str, Any]:
    """Failed retryable link of an open request -> back to the queue with ``retry_count + 1``;
    409 otherwise."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await repo.retry(conn, link_ids=[link_id], now=now)
        if rows:
            return views.link(rows[0])
        link = await repo.get(conn, link_id)
        if link is None:
            raise NotFound("Link not found")
        if link.status != LinkStatus.FAILED:
            raise Conflict(f"Link is {link.status}; only a failed link can be retried")
        if link.retry_count >= link.max_retries:
            raise Conflict(f"Link has used all {link.max_retries} retries")
        request = await requests_repo.get(conn, link.request_id)
        if request is not None and is_closed(request.status):
            raise Conflict(f"Request is {request.status}; a closed request takes no new work")
        raise Conflict("Link's server is gone; a connect-phase link cannot be retried")

    return await ctx.db.run(work)


async def bulk_retry(ctx: Context, *, link_ids: list[uuid.UUID]) -> int:
    """Retry those of ``link_ids`` that are retryable (links of closed requests are skipped);
    how many were."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> int:
        return len(await repo.retry(conn, link_ids=link_ids, now=now))

    return await ctx.db.run(work)


async def mark_final_failed(ctx: Context, *, request_id: uuid.UUID | None) -> int:
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> int:
        return await repo.mark_final_failed(conn, request_id=request_id, now=now)

    return await ctx.db.run(work)


async def account_stats(
    ctx: Context, *, email: str, request_id: uuid.UUID | None
) -> dict[str, Any]:
    day_start = start_of_day(ctx.clock.now(), ctx.settings.tz)
    async with ctx.db.read(snapshot=True) as conn:
        row = await repo.account_stats(
            conn, email=email, request_id=request_id, day_start=day_start
        )
        archived = await archive.archived_account_stats(
            conn, email=email, request_id=request_id, day_start=day_start
        )
    stats = {k: row._mapping[k] for k in row._mapping}
    return {"email": email, **archive_added(stats, archived)}


def archive_added(stats: dict[str, Any], archived: dict[str, Any]) -> dict[str, Any]:
    """An email's stats with those of its archived links added (counts summed, the latest
    post the later of the two)."""
    out = dict(stats)
    for name in ("today_count", "total_completed", "request_completed"):
        out[name] = int(out[name] or 0) + int(archived[name] or 0)
    posts = [t for t in (out["last_post_at"], archived["last_post_at"]) if t is not None]
    out["last_post_at"] = max(posts) if posts else None
    return out


async def get_link(ctx: Context, *, link_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        row = await repo.get(conn, link_id)
    return views.link(existing(row, "Link not found"))
