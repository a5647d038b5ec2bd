"""Retention on both databases: the leader's tick moves the links of requests closed longer than
ASSIGN_ARCHIVE_AFTER_DAYS ago into links_archive, and every worker API answer about them stays
the same (the request's link counts, the account's stats, the request itself); `assign export`
writes them, archived or not, without passwords."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from assign.cli import app
from assign.clock import FrozenClock
from assign.db.tables import link_counts, links, links_archive, requests
from assign.dispatcher.steps import tick
from assign.services import retention
from assign.services.context import Context
from tests.conftest import TEST_SECRET
from tests.factories import WORKER, Factory

EMAIL = "poster@example.com"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"archive_after_days": 2}


async def closed_request(factory: Factory) -> dict[str, Any]:
    """A request with 2 completed links (one with a post), 1 failed, 1 canceled by its close."""
    server = await factory.server(max_threads=10)
    request = await factory.request()
    four = await factory.links(request, 4, email=EMAIL)
    await factory.run_link(four[0], server, profile_url="https://s.example/u/1")
    await factory.run_link(
        four[1], server, profile_url="https://s.example/u/2", post_url="https://s.example/p/2"
    )
    await factory.run_link(four[2], server, status="failed", error="captcha")
    answer = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/complete", headers=factory.worker
    )
    assert answer.status_code == 200, answer.text
    return request


async def answers(factory: Factory, request_id: str) -> dict[str, Any]:
    get = factory.client.get
    h = factory.worker
    count = await get(f"{WORKER}/requests/{request_id}/links/count", headers=h)
    stats = await get(
        f"{WORKER}/links/account-stats",
        params={"email": EMAIL, "request_id": request_id},
        headers=h,
    )
    listed = await get(f"{WORKER}/requests", params={"status": "completed"}, headers=h)
    assert count.status_code == stats.status_code == listed.status_code == 200
    return {
        "count": count.json(),
        "stats": stats.json(),
        "request": [r for r in listed.json()["data"] if r["id"] == request_id],
        "admin": await factory.get_request(request_id),
    }


async def rows(ctx: Context, table: sa.Table, request_id: str) -> int:
    import uuid

    async with ctx.db.read() as conn:
        query = sa.select(sa.func.count()).where(table.c.request_id == uuid.UUID(request_id))
        return int((await conn.execute(query)).scalar_one())


async def counts(ctx: Context) -> dict[tuple[str, str], int]:
    async with ctx.db.read() as conn:
        found = await conn.execute(sa.select(link_counts).where(link_counts.c.n != 0))
        return {(str(r.request_id), r.status): r.n for r in found}


async def test_archived_links_answer_the_same(
    ctx: Context, factory: Factory, clock: FrozenClock
) -> None:
    request = await closed_request(factory)
    clock.advance(days=1)
    await tick(ctx)
    assert await rows(ctx, links_archive, request["id"]) == 0  # closed one day ago: kept
    clock.advance(days=2.5)  # the close canceled its failed link a day in: 2.5 days ago now
    before, counted = await answers(factory, request["id"]), await counts(ctx)

    report = await tick(ctx)  # the leader's tick: the archive step included
    assert report.archived == 4
    assert await rows(ctx, links, request["id"]) == 0
    assert await rows(ctx, links_archive, request["id"]) == 4
    assert await answers(factory, request["id"]) == before
    assert await counts(ctx) == counted
    assert before["count"]["total"] == 4 and before["stats"]["total_completed"] == 2
    async with ctx.db.read() as conn:
        archived_at = (await conn.execute(sa.select(requests.c.archived_at))).scalars().all()
    assert archived_at == [clock.now()]
    assert "password_enc" not in links_archive.c
    assert (await tick(ctx)).archived == 0


async def test_batches_are_bounded_and_open_requests_stay(
    ctx: Context, factory: Factory, clock: FrozenClock
) -> None:
    closed = await closed_request(factory)
    open_request = await factory.request()
    await factory.links(open_request, 3)
    clock.advance(days=3)
    assert await retention.archive_closed(ctx, now=clock.now(), batch=3) == 3
    assert await rows(ctx, links, closed["id"]) == 1
    assert await retention.archive_closed(ctx, now=clock.now(), batch=3) == 1
    assert await retention.archive_closed(ctx, now=clock.now(), batch=3) == 0
    assert await rows(ctx, links, open_request["id"]) == 3


@pytest.mark.parametrize("settings_overrides", [{"archive_after_days": 0}])
async def test_zero_keeps_everything(ctx: Context, factory: Factory, clock: FrozenClock) -> None:
    request = await closed_request(factory)
    clock.advance(days=400)
    assert (await tick(ctx)).archived == 0
    assert await rows(ctx, links, request["id"]) == 4


async def test_export_reads_both_tables_without_passwords(
    ctx: Context, factory: Factory, clock: FrozenClock, clean_database: str
) -> None:
    request = await closed_request(factory)
    clock.advance(days=3)
    assert await retention.archive_closed(ctx, now=clock.now(), batch=2) == 2  # half archived
    env = {"ASSIGN_DATABASE_URL": clean_database, "ASSIGN_SECRET_KEY": TEST_SECRET}
    runner = CliRunner()

    def export(*args: str) -> str:
        result = runner.invoke(app, ["export", request["id"], *args], env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        assert "s3cret-pass" not in result.stdout and "password" not in result.stdout
        return result.stdout

    lines = [json.loads(line) for line in (await asyncio.to_thread(export)).splitlines()]
    assert len(lines) == 4 and {item["request_id"] for item in lines} == {request["id"]}
    assert sorted(item["status"] for item in lines) == [
        "canceled",
        "completed",
        "completed",
        "failed",
    ]
    table = list(csv.DictReader(io.StringIO(await asyncio.to_thread(export, "--format", "csv"))))
    assert sorted(r["id"] for r in table) == sorted(item["id"] for item in lines)
    missing = await asyncio.to_thread(
        runner.invoke, app, ["export", "00000000-0000-0000-0000-000000000000"], env=env
    )
    assert missing.exit_code == 1 and "no request has that id" in missing.stderr
