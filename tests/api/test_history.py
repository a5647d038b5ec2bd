"""Attempts, link counts and throughput, written by the database's triggers, driven through the
API and the dispatcher tick on both databases."""

from __future__ import annotations

from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.dispatcher.steps import tick
from assign.services.context import Context
from tests.dispatcher.test_tick import heartbeat, no_rate_limit
from tests.factories import ADMIN, WORKER, Factory, new_id
from tests.invariants import check_attempts


async def admin_link(factory: Factory, link_id: str) -> dict[str, Any]:
    response = await factory.client.get(f"{ADMIN}/links/{link_id}", headers=factory.admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def throughput(factory: Factory, **params: Any) -> list[dict[str, Any]]:
    response = await factory.client.get(
        f"{ADMIN}/stats/throughput", params=params, headers=factory.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["total"] == len(body["data"])
    return body["data"]  # type: ignore[no-any-return]


def outcomes(link: dict[str, Any]) -> list[tuple[int, str | None]]:
    return [(a["number"], a["outcome"]) for a in link["attempts"]]


async def test_claim_and_results_write_attempts(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    ok, bad = await factory.links(request, 2)
    before = await admin_link(factory, ok["id"])
    assert before["attempts"] == [] and "password" not in before and "password_enc" not in before

    for link in (ok, bad):
        assert (await factory.assign(link["id"], server)).status_code == 200
    await factory.claim(server)
    running = await admin_link(factory, ok["id"])
    (attempt,) = running["attempts"]
    assert attempt["number"] == 1 and attempt["outcome"] is None
    assert attempt["finished_at"] is None and attempt["phase"] == "create"
    assert attempt["server_id"] == server["id"]
    assert attempt["started_at"] == running["started_at"]
    await check_attempts(ctx)

    clock.advance(seconds=5)
    await factory.result(ok["id"], server, profile_url="https://p/1", post_url="https://q/1")
    response = await factory.result(
        bad["id"], server, status="failed", error="captcha", profile_url="https://p/2"
    )
    assert response.status_code == 200
    done = await admin_link(factory, ok["id"])
    assert outcomes(done) == [(1, "completed")]
    assert done["attempts"][0]["profile_url"] == "https://p/1"
    assert done["attempts"][0]["post_url"] == "https://q/1"
    assert done["attempts"][0]["finished_at"] == done["completed_at"]
    # the finished attempt keeps the server, phase and start it ran with
    assert {k: done["attempts"][0][k] for k in ("server_id", "phase", "started_at")} == {
        k: attempt[k] for k in ("server_id", "phase", "started_at")
    }
    failed = await admin_link(factory, bad["id"])
    assert outcomes(failed) == [(1, "failed")]
    assert failed["attempts"][0]["error"] == "captcha"
    # the URLs the failed result carried stay with its attempt
    assert failed["attempts"][0]["profile_url"] == "https://p/2"

    # a retry and a second claim start attempt 2
    response = await factory.client.put(f"{WORKER}/links/{bad['id']}/retry", headers=factory.worker)
    assert response.status_code == 200, response.text
    assert (await factory.assign(bad["id"], server)).status_code == 200
    await factory.claim(server)
    again = await admin_link(factory, bad["id"])
    assert outcomes(again) == [(1, "failed"), (2, None)]
    await check_attempts(ctx)


async def test_stale_and_lost_server_end_attempts(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    await no_rate_limit(factory)
    stale_server = await factory.server(max_threads=1)
    request = await factory.request()
    (stale,) = await factory.links(request, 1)
    await heartbeat(factory, stale_server)
    await tick(ctx)
    await factory.claim(stale_server)
    for _ in range(4):  # 16 minutes running, the server alive: past the stale timeout
        clock.advance(minutes=4)
        await heartbeat(factory, stale_server)
    assert (await tick(ctx)).stale_failed == 1
    assert outcomes(await admin_link(factory, stale["id"])) == [(1, "stale")]
    await check_attempts(ctx)

    dead = await factory.server(max_threads=2, priority=10)
    other = await factory.request()
    lost, released = await factory.links(other, 2)
    await heartbeat(factory, dead)
    await tick(ctx)
    (claimed,) = await factory.claim(dead, limit=1)
    lost, released = (lost, released) if claimed["id"] == lost["id"] else (released, lost)
    clock.advance(minutes=6)
    await heartbeat(factory, stale_server)
    report = await tick(ctx)
    assert report.servers_lost == 1 and report.lost_failed == 1
    gone = await admin_link(factory, lost["id"])
    assert outcomes(gone) == [(1, "lost")]
    assert gone["attempts"][0]["error"].startswith("server lost")
    assert (await admin_link(factory, released["id"]))["attempts"] == []  # never claimed
    await check_attempts(ctx)


async def test_cancel_ends_the_attempt_and_complete_leaves_running_ones(
    ctx: Context, factory: Factory
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    running, queued = await factory.links(request, 2)
    assert (await factory.assign(running["id"], server)).status_code == 200
    await factory.claim(server)
    assert (await factory.assign(queued["id"], server)).status_code == 200

    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/complete", headers=factory.worker
    )
    assert response.status_code == 200
    # /complete cancels the queued link (never claimed: no attempt); the running one goes on
    assert (await admin_link(factory, queued["id"]))["attempts"] == []
    assert outcomes(await admin_link(factory, running["id"])) == [(1, None)]
    await check_attempts(ctx)

    # the connect step cancels a running link without a profile: its attempt ends canceled
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.status_code == 200, response.text
    assert outcomes(await admin_link(factory, running["id"])) == [(1, "canceled")]
    await check_attempts(ctx)


async def test_connect_phase_claims_number_on(ctx: Context, factory: Factory) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, profile_url="https://p/1")
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/connect", headers=factory.worker
    )
    assert response.json()["links_connect"] == 1
    await factory.claim(server)
    connecting = await admin_link(factory, link["id"])
    assert connecting["status"] == "connecting"
    assert [(a["number"], a["phase"], a["outcome"]) for a in connecting["attempts"]] == [
        (1, "create", "completed"),
        (2, "connect", None),
    ]
    await factory.result(link["id"], server, post_url="https://q/1")
    assert outcomes(await admin_link(factory, link["id"]))[-1] == (2, "completed")
    await check_attempts(ctx)


async def test_throughput_by_server_and_request(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    a = await factory.server(max_threads=5)
    b = await factory.server(max_threads=5)
    request = await factory.request()
    links = await factory.links(request, 4)
    await factory.run_link(links[0], a)
    await factory.run_link(links[1], a, status="failed", error="captcha")
    clock.advance(minutes=1)
    await factory.run_link(links[2], b)
    await factory.run_link(links[3], b)

    by_server = await throughput(factory, by="server", minutes=60)
    got = {(row["key"], row["completed"], row["failed"]) for row in by_server}
    assert got == {(a["id"], 1, 1), (b["id"], 2, 0)}
    minutes = [row["minute"] for row in by_server]
    assert minutes == sorted(minutes) and all(m.endswith(":00Z") for m in minutes)
    by_request = await throughput(factory, by="request")
    assert [(r["key"], r["completed"], r["failed"]) for r in by_request] == [
        (request["id"], 1, 1),
        (request["id"], 2, 0),
    ]
    # only the last minute
    assert [(r["completed"], r["failed"]) for r in await throughput(factory, minutes=1)] == [(2, 0)]
    clock.advance(minutes=5)
    assert await throughput(factory, minutes=5) == []
    await check_attempts(ctx)


async def test_throughput_refuses_bad_input(factory: Factory) -> None:
    for params, field in (
        ({"minutes": 0}, "minutes"),
        ({"minutes": "abc"}, "minutes"),
        ({"by": "site"}, "by"),
    ):
        response = await factory.client.get(
            f"{ADMIN}/stats/throughput", params=params, headers=factory.admin
        )
        assert response.status_code == 400, (params, response.text)
        assert field in {d["field"] for d in response.json()["details"]}


async def test_throughput_span_is_clamped_to_the_history_kept(factory: Factory) -> None:
    response = await factory.client.get(
        f"{ADMIN}/stats/throughput", params={"minutes": 10**9}, headers=factory.admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True


async def test_admin_link_unknown_and_malformed(factory: Factory) -> None:
    response = await factory.client.get(f"{ADMIN}/links/{new_id()}", headers=factory.admin)
    assert response.status_code == 404
    response = await factory.client.get(f"{ADMIN}/links/not-a-uuid", headers=factory.admin)
    assert response.status_code in (400, 404)
    response = await factory.client.get(f"{ADMIN}/links/{new_id()}", headers=factory.worker)
    assert response.status_code == 401


async def test_history_older_than_history_days_is_pruned(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    import sqlalchemy as sa

    from assign.db.tables import attempts, link_counts
    from assign.db.tables import throughput as throughput_table
    from assign.services import history

    server = await factory.server(max_threads=5)
    request = await factory.request()
    old, running, recent = await factory.links(request, 3)
    await factory.run_link(old, server)
    assert (await factory.assign(running["id"], server)).status_code == 200
    await factory.claim(server)  # an attempt still running when it gets old: not a row
    clock.advance(days=14, minutes=1)  # ASSIGN_HISTORY_DAYS: 14 by default
    await factory.run_link(recent, server)

    async def count(table: sa.Table) -> int:
        async with ctx.db.read() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            )

    assert await count(attempts) == 2 and await count(throughput_table) == 4
    zeros = await count(link_counts)
    deleted = await history.prune(ctx)
    assert deleted >= 3  # the old attempt, the old minute's throughput by server and request
    assert [a["number"] for a in (await admin_link(factory, old["id"]))["attempts"]] == []
    assert outcomes(await admin_link(factory, running["id"])) == [(1, None)]  # still open
    assert outcomes(await admin_link(factory, recent["id"])) == [(1, "completed")]
    assert await count(throughput_table) == 2  # the recent minute, by server and by request
    await check_attempts(ctx)
    assert await history.compact(ctx) > 0
    # folded: one row per (request, status) still held (completed, running), none at 0
    assert await count(link_counts) == 2 < zeros
    await check_attempts(ctx)


@pytest.mark.parametrize("settings_overrides", [{"history_days": 1}])
async def test_history_days_setting(ctx: Context, clock: FrozenClock, factory: Factory) -> None:
    from assign.services import history

    server = await factory.server(max_threads=5)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server)
    clock.advance(hours=23)
    await history.prune(ctx)
    assert len((await admin_link(factory, link["id"]))["attempts"]) == 1
    clock.advance(hours=2)
    await history.prune(ctx)
    assert (await admin_link(factory, link["id"]))["attempts"] == []
    response = await factory.client.get(
        f"{ADMIN}/stats/throughput", params={"minutes": 24 * 60 + 1}, headers=factory.admin
    )
    assert response.status_code == 200  # a longer span is clamped to the history kept


async def test_result_code_can_set_an_attempts_urls(ctx: Context, factory: Factory) -> None:
    import uuid

    from assign.db.repositories import history as history_repo

    server = await factory.server(max_threads=5)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server, status="failed", error="captcha")
    async with ctx.db.transaction() as conn:
        await history_repo.set_attempt_urls(conn, [(uuid.UUID(link["id"]), "https://p/9", None)])
    (attempt,) = (await admin_link(factory, link["id"]))["attempts"]
    assert (attempt["profile_url"], attempt["post_url"]) == ("https://p/9", None)


async def test_compaction_keeps_the_sums(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    from assign.services import history

    clock.current = clock.current.replace(second=0, microsecond=0)  # 30 s later: same minute
    a = await factory.server(max_threads=10)
    request = await factory.request()
    links = await factory.links(request, 6)
    for link in links[:4]:
        await factory.run_link(link, a)
    await factory.run_link(links[4], a, status="failed", error="captcha")
    before = await throughput(factory, by="request")
    assert [(r["completed"], r["failed"]) for r in before] == [(4, 1)]
    assert await history.compact(ctx) > 0
    assert await history.compact(ctx) == 0  # nothing left to fold
    assert await throughput(factory, by="request") == before
    assert await throughput(factory, by="server") == [{**before[0], "key": a["id"]}]
    await check_attempts(ctx)  # link_counts still equal the links counted
    clock.advance(seconds=30)
    await factory.run_link(links[5], a)  # appended after the fold, same minute
    assert [(r["completed"], r["failed"]) for r in await throughput(factory, by="request")] == [
        (5, 1)
    ]
    await check_attempts(ctx)
