"""Links chosen by a filter (the console's Links page): keyset pages, counts, bulk retry and
cancel, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

from assign.domain.filters import LinkFilter
from assign.services import link_sets
from assign.services.context import Context
from tests.factories import Factory


async def _failed(
    factory: Factory, request: dict[str, Any], server: dict[str, Any], n: int, error: str
) -> list[str]:
    links = await factory.links(request, n, server_id=server["id"])
    for link in await factory.claim(server, limit=n):
        done = await factory.result(link["id"], server, status="failed", error=error)
        assert done.status_code == 200, done.text
    return [link["id"] for link in links]


async def test_pages_follow_the_keyset(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    await factory.links(request, 7)
    match = LinkFilter(request_id=uuid.UUID(request["id"]))
    seen: list[uuid.UUID] = []
    after = None
    for _ in range(4):
        items, after = await link_sets.list_page(ctx, match=match, after=after, limit=3)
        seen += [i["id"] for i in items]
        if after is None:
            break
    assert len(seen) == 7 == len(set(seen)) and seen == sorted(seen)


async def test_pages_of_one_request_merge_its_statuses(ctx: Context, factory: Factory) -> None:
    """A request's pages read each of its statuses in id order and merge them: the same pages,
    whatever the statuses, as the whole table by id gives."""
    request = await factory.request()
    other = await factory.request()
    server = await factory.server(max_threads=10)
    await factory.links(request, 4, email="a@example.com")
    await factory.links(other, 3)
    await factory.links(request, 3, server_id=server["id"])
    (claimed,) = await factory.claim(server, limit=1)
    assert (await factory.result(claimed["id"], server, status="completed")).status_code == 200
    everything = await factory.list_links(status="pending,queued,completed")
    rid = uuid.UUID(request["id"])

    async def pages(**fields: Any) -> list[uuid.UUID]:
        seen: list[uuid.UUID] = []
        after = None
        while True:
            items, after = await link_sets.list_page(
                ctx, match=LinkFilter(request_id=rid, **fields), after=after, limit=2
            )
            seen += [i["id"] for i in items]
            if after is None:
                return seen

    def expected(statuses: tuple[str, ...], email: str | None = None) -> list[uuid.UUID]:
        return sorted(
            uuid.UUID(link["id"])
            for link in everything
            if link["request_id"] == request["id"]
            and link["status"] in statuses
            and email in (None, link["email"])
        )

    assert await pages() == expected(("pending", "queued", "completed"))
    assert len(await pages()) == 7
    assert await pages(statuses=("pending", "completed")) == expected(("pending", "completed"))
    assert await pages(statuses=("queued",)) == expected(("queued",))
    assert await pages(email="a@example.com") == expected(("pending",), "a@example.com")


async def test_filters_and_counts(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    other = await factory.request()
    server = await factory.server(max_threads=5)
    await factory.links(request, 4, email="a@example.com")
    await factory.links(other, 2, email="b@example.com")
    await _failed(factory, request, server, 2, "Captcha not solved")
    rid = uuid.UUID(request["id"])

    async def count(**fields: Any) -> int:
        return await link_sets.count(ctx, match=LinkFilter(**fields), link_ids=None)

    assert await count(request_id=rid) == 6
    assert await count(request_id=rid, statuses=("failed",)) == 2
    assert await count(statuses=("pending",)) == 6
    assert await count(email="b@example.com") == 2
    assert await count(error="CAPTCHA") == 2  # case-insensitive, contains
    assert await count(error="100%") == 0  # LIKE wildcards are plain text
    assert await count(server_id=uuid.UUID(server["id"]), request_id=rid) == 2


async def test_cancel_by_filter_frees_slots(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    server = await factory.server(max_threads=5)
    await factory.links(request, 3, server_id=server["id"])  # queued, holding 3 slots
    await factory.links(request, 2)  # pending
    assert (await factory.get_server(server["id"]))["active_tasks"] == 3
    match = LinkFilter(request_id=uuid.UUID(request["id"]))
    assert await link_sets.cancel(ctx, match=match, link_ids=None) == 5
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    assert (
        await link_sets.count(
            ctx,
            match=LinkFilter(statuses=("canceled",), request_id=match.request_id),
            link_ids=None,
        )
        == 5
    )
    # a second time there is nothing left to cancel
    assert await link_sets.cancel(ctx, match=match, link_ids=None) == 0


async def test_cancel_keeps_completed_links(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    server = await factory.server(max_threads=5)
    links = await factory.links(request, 2, server_id=server["id"])
    await factory.claim(server, limit=1)
    running = [
        link for link in await factory.list_links(request_id=request["id"], status="running")
    ]
    assert (await factory.result(running[0]["id"], server, status="completed")).status_code == 200
    ids = [uuid.UUID(link["id"]) for link in links]
    assert await link_sets.cancel(ctx, match=None, link_ids=ids) == 1
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0


async def test_retry_only_retryable_links_of_open_requests(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    closed = await factory.request()
    server = await factory.server(max_threads=10)
    await _failed(factory, request, server, 2, "timeout")
    await _failed(factory, closed, server, 1, "timeout")
    await factory.links(request, 1)  # pending: not retryable
    response = await factory.client.put(
        f"/api/v1/worker/requests/{closed['id']}/status",
        json={"status": "completed"},
        headers=factory.worker,
    )
    assert response.status_code == 200, response.text
    moved = await link_sets.retry(ctx, match=LinkFilter(error="timeout"), link_ids=None)
    assert moved == 2
    pending = await link_sets.count(
        ctx,
        match=LinkFilter(statuses=("pending",), request_id=uuid.UUID(request["id"])),
        link_ids=None,
    )
    assert pending == 3
