"""Tool API: PUT /links/results (many results in one call) and the failed-result URL rule."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from assign.db.tables import links
from assign.services.context import Context
from tests.factories import TOOL, Factory, new_id
from tests.invariants import assert_active_tasks_consistent


async def _results(factory: Factory, server: dict[str, Any], body: Any) -> Any:
    return await factory.client.put(
        f"{TOOL}/links/results", json=body, headers=factory.tool(server)
    )


async def _running(
    factory: Factory, server: dict[str, Any], request: dict[str, Any], n: int
) -> list[dict[str, Any]]:
    links = await factory.links(request, n)
    for link in links:
        assert (await factory.assign(link["id"], server)).status_code == 200
    claimed = await factory.claim(server, limit=1000)
    assert {c["id"] for c in claimed} >= {lk["id"] for lk in links}
    return links


async def test_results_each_on_its_own_in_the_order_given(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=10)
    other = await factory.server(max_threads=10)
    first = await factory.request()
    second = await factory.request()
    a, b, c = await _running(factory, server, first, 3)
    (d,) = await _running(factory, server, second, 1)
    (foreign,) = await _running(factory, other, first, 1)
    (queued,) = await factory.links(second, 1)
    assert (await factory.assign(queued["id"], server)).status_code == 200
    missing = new_id()
    body = {
        "results": [
            {"id": c["id"], "status": "completed", "post_url": "https://x/c", "details": {"n": 3}},
            {"id": missing, "status": "completed"},
            {"id": a["id"], "status": "failed", "error": "captcha"},
            {"id": foreign["id"], "status": "completed"},
            {"id": queued["id"], "status": "completed"},
            {"id": b["id"], "status": "completed", "profile_url": "https://p/b"},
            {"id": d["id"], "status": "completed"},
        ]
    }
    response = await _results(factory, server, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["updated"] == 4
    assert [(x["id"], x["code"]) for x in answer["data"]] == [
        (c["id"], 200), (missing, 404), (a["id"], 200), (foreign["id"], 404),
        (queued["id"], 409), (b["id"], 200), (d["id"], 200),
    ]  # fmt: skip
    assert all("error" not in x for x in answer["data"] if x["code"] == 200)
    assert answer["data"][1]["error"] == "Link not found"
    assert "queued" in answer["data"][4]["error"]
    got_c = await factory.get_link(c["id"], server)
    assert (got_c["status"], got_c["post_url"], got_c["details"]) == (
        "completed",
        "https://x/c",
        {"n": 3},
    )
    got_a = await factory.get_link(a["id"], server)
    assert (got_a["status"], got_a["error"]) == ("failed", "captcha")
    assert (await factory.get_link(queued["id"], server))["status"] == "queued"
    # slots: 4 applied of 5 in flight on the server (queued one still holds its slot)
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    assert (await factory.get_server(other["id"]))["active_tasks"] == 1
    # created_links: c and b of the first request, d of the second; the failure counts nothing
    assert (await factory.get_request(first["id"]))["created_links"] == 2
    assert (await factory.get_request(second["id"]))["created_links"] == 1
    await assert_active_tasks_consistent(ctx)

    # a second report of the same links: each a 409 now, nothing changes
    again = await _results(factory, server, {"results": body["results"][:1]})
    assert again.json()["updated"] == 0 and again.json()["data"][0]["code"] == 409
    assert (await factory.get_request(first["id"]))["created_links"] == 2


async def test_results_merge_details_like_the_single_result(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await factory.links(request, 1, details={"a": 1, "b": 1})
    assert (await factory.assign(link["id"], server)).status_code == 200
    await factory.claim(server)
    body = {"results": [{"id": link["id"], "status": "completed", "details": {"b": 2}}]}
    assert (await _results(factory, server, body)).json()["updated"] == 1
    assert (await factory.get_link(link["id"], server))["details"] == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "results"),
        ({"results": []}, "results"),
        ({"results": [{"id": "x", "status": "completed"}] * 1001}, "results"),
        ({"results": "many"}, "results"),
        ("GOOD,BAD", "results[1].id"),
        ("GOOD,STATUS", "results[1].status"),
        ("GOOD,URL", "results[1].profile_url"),
        ("GOOD,DETAILS", "results[1].details"),
        ("GOOD,GOOD", "results[1].id"),
    ],
)
async def test_malformed_batch_is_a_400_and_applies_nothing(
    factory: Factory, ctx: Context, body: Any, field: str
) -> None:
    server = await factory.server()
    request = await factory.request()
    (link,) = await _running(factory, server, request, 1)
    good = {"id": link["id"], "status": "completed"}
    items = {
        "GOOD": good,
        "BAD": {"id": "not-a-uuid", "status": "completed"},
        "STATUS": {"id": new_id(), "status": "done"},
        "URL": {"id": new_id(), "status": "completed", "profile_url": "x" * 2001},
        "DETAILS": {"id": new_id(), "status": "completed", "details": ["not", "an", "object"]},
    }
    if isinstance(body, str):
        body = {"results": [items[name] for name in body.split(",")]}
    response = await _results(factory, server, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["success"] is False
    assert answer["details"][0]["field"] == field, answer
    # nothing applied: the good item's link is still running, its slot still held
    assert (await factory.get_link(link["id"], server))["status"] == "running"
    assert (await factory.get_server(server["id"]))["active_tasks"] == 1
    assert (await factory.get_request(request["id"]))["created_links"] == 0


async def test_a_thousand_results_in_one_call(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=1000)
    request = await factory.request()
    links = await _running(factory, server, request, 1000)
    body = {"results": [{"id": lk["id"], "status": "completed"} for lk in links]}
    response = await _results(factory, server, body)
    assert response.status_code == 200
    assert response.json()["updated"] == 1000
    assert (await factory.get_request(request["id"]))["created_links"] == 1000
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    await assert_active_tasks_consistent(ctx)


# --- a failed attempt's URLs are not kept on the link (PRODUCT.md §9) -------------------------


async def test_failed_result_keeps_no_url(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    first, second = await factory.links(request, 2)
    failed = await factory.run_link(
        first, server, status="failed", profile_url="https://p/1", post_url="https://x/1"
    )
    assert (failed["status"], failed["profile_url"], failed["post_url"]) == ("failed", None, None)
    assert (await factory.get_link(first["id"], server))["profile_url"] is None

    assert (await factory.assign(second["id"], server)).status_code == 200
    await factory.claim(server)
    body = {
        "results": [
            {
                "id": second["id"],
                "status": "failed",
                "profile_url": "https://p/2",
                "post_url": "https://x/2",
            }
        ]
    }
    assert (await _results(factory, server, body)).json()["updated"] == 1
    got = await factory.get_link(second["id"], server)
    assert (got["status"], got["profile_url"], got["post_url"]) == ("failed", None, None)


# --- a failed result's back-off (PRODUCT.md §6: min(retry_max, retry_base * 2^retry_count),
# times a factor in [0.5, 1], counted from the failure) ---------------------------------------


async def _retry_at(ctx: Context, link_id: str) -> datetime:
    async with ctx.db.read() as conn:
        value = (
            await conn.execute(sa.select(links.c.retry_at).where(links.c.id == uuid.UUID(link_id)))
        ).scalar_one()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@pytest.mark.parametrize("batched", [False, True])
async def test_failed_result_backs_off_by_its_retry_count(
    factory: Factory, ctx: Context, batched: bool
) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request()
    links_ = await _running(factory, server, request, 3)
    counts = [0, 3, 8]  # 30 s, 240 s, 7680 s capped at 3600 s
    async with ctx.db.transaction() as conn:
        for link, count in zip(links_, counts, strict=True):
            await conn.execute(
                links.update()
                .where(links.c.id == uuid.UUID(link["id"]))
                .values(retry_count=count, max_retries=10)
            )
    before = ctx.clock.now()  # the service's clock (frozen in these tests)
    if batched:
        body = {"results": [{"id": lk["id"], "status": "failed"} for lk in links_]}
        assert (await _results(factory, server, body)).json()["updated"] == 3
    else:
        for link in links_:
            assert (await factory.result(link["id"], server, status="failed")).status_code == 200
    after = ctx.clock.now()
    base, cap = ctx.settings.retry_base_seconds, ctx.settings.retry_max_seconds
    for link, count in zip(links_, counts, strict=True):
        delay = min(cap, base * 2**count)
        at = await _retry_at(ctx, link["id"])
        assert before + timedelta(seconds=0.5 * delay) <= at <= after + timedelta(seconds=delay)


# --- single results sent at once: applied together, each answered as if alone ----------------


async def test_concurrent_single_results_each_answered_as_alone(
    factory: Factory, ctx: Context
) -> None:
    server = await factory.server(max_threads=30)
    request = await factory.request()
    links_ = await _running(factory, server, request, 20)
    twice = links_[0]["id"]
    calls = [factory.result(lk["id"], server, status="completed") for lk in links_]
    calls.append(factory.result(twice, server, status="completed"))
    calls.append(factory.result(new_id(), server, status="completed"))
    answers = await asyncio.gather(*calls)
    codes = [a.status_code for a in answers]
    assert codes[1:20] == [200] * 19
    assert sorted([codes[0], codes[20]]) == [200, 409]  # the repeat is answered as a repeat
    assert codes[21] == 404
    for answer, link in zip(answers[1:20], links_[1:20], strict=True):
        assert (answer.json()["data"]["id"], answer.json()["data"]["status"]) == (
            link["id"],
            "completed",
        )
    assert (await factory.get_request(request["id"]))["created_links"] == 20
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    await assert_active_tasks_consistent(ctx)
