"""PostgreSQL failing under real ``assign serve`` processes.

* The database's connections are terminated and its server restarted while clients keep
  calling: every answer comes quickly (a 503 while the database is gone, never a 500 or a hang),
  ``/readyz`` fails and then recovers on its own, and bulk creates are all or nothing.
* A session terminated while its bulk create is writing: a quick 503, nothing stored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from tests.factories import TOOL, WORKER
from tests.faults.checks import (
    assert_active_tasks_consistent,
    assert_all_or_nothing,
    batch_counts,
    lock_waiters,
)
from tests.faults.conftest import FaultDatabase
from tests.faults.load import QUICK, Load, create_request

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: how long /readyz may take to recover once PostgreSQL is back
READY_WITHIN = 10.0


# --- connections terminated, server restarted, under load ------------------------------------


async def _outage(
    db: FaultDatabase, base: str
) -> tuple[Load, list[tuple[float, float, int | None]], dict[str, float]]:
    request_id = await create_request(base)
    load = Load(base, db.worker_key, db.tool_key, request_id, batch_size=50)
    ready: list[tuple[float, float, int | None]] = []  # (asked, answered, status)
    marks: dict[str, float] = {}

    async def poll_ready(http: httpx.AsyncClient) -> None:
        while not load.stop.is_set():
            started = time.monotonic()
            try:
                status: int | None = (await http.get("/readyz")).status_code
            except httpx.TransportError:
                status = None
            ready.append((started, time.monotonic(), status))
            await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        tasks = [asyncio.create_task(load.worker_client(http)) for _ in range(12)]
        tasks += [asyncio.create_task(load.tool_client(http)) for _ in range(2)]
        tasks.append(asyncio.create_task(poll_ready(http)))
        try:
            await asyncio.sleep(2)
            # every connection of Assign's database cut, four times, while requests run
            marks["terminated"] = time.monotonic()
            for _ in range(4):
                killed = await db.pg.terminate_backends(db.name)
                assert killed > 0, "no backend of the Assign database to terminate"
                await asyncio.sleep(0.8)
            # the server stopped for 3 s, then started again
            marks["down"] = time.monotonic()
            await asyncio.to_thread(db.pg.stop, "fast")
            marks["stopped"] = time.monotonic()
            await asyncio.sleep(3)
            marks["starting"] = time.monotonic()
            await asyncio.to_thread(db.pg.start)
            marks["up"] = time.monotonic()
            deadline = marks["up"] + READY_WITHIN
            while time.monotonic() < deadline:
                if ready and ready[-1][0] > marks["up"] and ready[-1][2] == 200:
                    marks["ready"] = ready[-1][0]
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(3)  # load on the recovered service
            marks["end"] = time.monotonic()
        finally:
            load.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        # once recovered, every kind of call works again
        final = [
            await load.bulk(http),
            await load.call(http, "list", "GET", f"{WORKER}/links", db.worker_key),
            await load.call(http, "heartbeat", "POST", f"{TOOL}/heartbeat", db.tool_key, json={}),
        ]
        assert [c.status for c in final] == [200, 200, 200], [
            (c.op, c.status, c.body) for c in final
        ]
    return load, ready, marks


def test_database_outage_under_load(fault_db: FaultDatabase) -> None:
    with fault_db.serve(dispatcher=True, name="outage") as service:
        pid = service.process.pid
        load, ready, marks = asyncio.run(_outage(fault_db, service.url))
        assert service.process.poll() is None, "assign serve exited during the outage"
        assert service.process.pid == pid
        log = service.log_tail(40)

    summary = load.summary()
    statuses = Counter(c.status for c in load.calls)
    # never a 500, never a hang: 2xx, or 503 while the database is away
    wrong = [c for c in load.calls if c.status is None or (c.status >= 300 and c.status != 503)]
    assert not wrong, (
        f"unexpected answers {[(c.op, c.status, c.body) for c in wrong[:5]]}; {summary}\n{log}"
    )
    slow = sorted((c for c in load.calls if c.seconds > QUICK), key=lambda c: -c.seconds)
    slowest = [(c.op, c.status, round(c.seconds, 1)) for c in slow[:5]]
    assert not slow, f"answers slower than {QUICK} s: {slowest}"
    assert statuses[503] > 0, f"the outage was never felt: {summary}"
    answered_503 = [c for c in load.calls if c.status == 503]
    assert all(
        c.body == {"success": False, "error": "Database unavailable"} for c in answered_503
    ), answered_503[0].body
    # no answer failed after the service recovered
    late = [
        c
        for c in load.calls
        if c.started > marks.get("ready", float("inf")) + 1 and c.status == 503
    ]
    assert not late, f"{len(late)} 503 answer(s) over a second after /readyz recovered"

    # /readyz failed while the database was down, and recovered within 10 s of its return
    during = [
        s for asked, answered, s in ready if marks["stopped"] < asked < answered < marks["starting"]
    ]
    assert during and all(s == 503 for s in during), f"/readyz during the outage: {Counter(during)}"
    assert "ready" in marks, (
        f"/readyz did not recover within {READY_WITHIN} s of PostgreSQL's return"
    )
    assert all(s == 200 for asked, _, s in ready if asked > marks["ready"]), (
        "/readyz failed again after recovering"
    )

    counts = asyncio.run(batch_counts(fault_db))
    assert_all_or_nothing(load, counts)
    ok = [m for m, s in load.batches.items() if s is not None and 200 <= s < 300]
    assert len(ok) > 10, summary
    # the in-process dispatcher is back too: links it assigned after the recovery were claimed
    claimed = [
        c
        for c in load.calls
        if c.op == "claim" and c.started > marks["ready"] and (c.body or {}).get("total")
    ]
    assert claimed, f"no link dispatched and claimed after the recovery: {summary}"
    asyncio.run(assert_active_tasks_consistent(fault_db))


# --- a session terminated in the middle of a bulk create -------------------------------------


async def _terminated_mid_create(db: FaultDatabase, service: Any) -> None:
    request_id = await create_request(service.url)
    blocker = await asyncpg.connect(db.url, timeout=5)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", uuid.UUID(request_id)
        )
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            headers = {"X-API-Key": db.worker_key}
            links = [{"request_id": request_id, "service_type": "entity", "site_name": "cut"}] * 500
            create = asyncio.create_task(
                http.post(f"{WORKER}/links/bulk", headers=headers, json={"links": links})
            )
            try:
                deadline = time.monotonic() + 10
                while await lock_waiters(db) < 1:  # the create is writing, held by the lock
                    assert not create.done(), create.result().text
                    assert time.monotonic() < deadline, "the bulk create never reached the database"
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                await db.pg.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND wait_event_type = 'Lock'",
                    db.name,
                )
                response = await asyncio.wait_for(create, QUICK)
            finally:
                create.cancel()
                await asyncio.gather(create, return_exceptions=True)
            assert response.status_code == 503, response.text
            assert time.monotonic() - started < QUICK
            await tx.rollback()
            response = await http.post(
                f"{WORKER}/links/bulk", headers=headers, json={"links": links}
            )
            assert response.status_code == 200, response.text
    finally:
        await blocker.close()
    assert await db.count("SELECT count(*) FROM links WHERE site_name = 'cut'") == 500


def test_session_terminated_during_bulk_create(fault_db: FaultDatabase) -> None:
    with fault_db.serve(name="cut") as service:
        asyncio.run(_terminated_mid_create(fault_db, service))
