"""The API process stopped under real calls, on a private PostgreSQL.

* The API process is killed with SIGKILL while bulk creates are being written: nothing partial.
* SIGTERM to ``assign serve``: the request in progress still gets its answer, then exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.factories import WORKER
from tests.faults.checks import assert_all_or_nothing, backends, batch_counts, lock_waiters
from tests.faults.conftest import FaultDatabase
from tests.faults.load import Load, create_request

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: a session writing rows of links (a bulk create inserts them by INSERT or COPY)
WRITING_LINKS = "(query ILIKE 'INSERT INTO links%' OR query ILIKE 'COPY \"links\"%')"


# --- the API process killed in the middle of bulk creates ------------------------------------


async def _kill_during_bulk(db: FaultDatabase, base: str, pid_kill: Any) -> Load:
    request_id = await create_request(base)
    load = Load(base, db.worker_key, db.tool_key, request_id, batch_size=2000)

    async def writer(http: httpx.AsyncClient) -> None:
        while not load.stop.is_set():
            await load.bulk(http)

    async def inserting() -> bool:
        rows = await db.pg.fetch(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' "
            f"AND {WRITING_LINKS}",
            db.name,
        )
        return int(rows[0][0]) > 0

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        tasks = [asyncio.create_task(writer(http)) for _ in range(6)]
        try:
            deadline = time.monotonic() + 20
            while sum(s == 200 for s in load.batches.values()) < 3:  # some batches stored first
                assert time.monotonic() < deadline, f"bulk creates do not succeed: {load.summary()}"
                await asyncio.sleep(0.05)
            while not await inserting():
                assert time.monotonic() < deadline, "never caught a bulk insert in progress"
            pid_kill()
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
        finally:
            load.stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return load


def test_kill_9_during_bulk_creates(fault_db: FaultDatabase) -> None:
    with fault_db.serve(name="kill9") as service:

        def kill() -> None:
            service.process.send_signal(signal.SIGKILL)

        load = asyncio.run(_kill_during_bulk(fault_db, service.url, kill))
        assert service.process.wait(10) == -signal.SIGKILL

    unanswered = [m for m, s in load.batches.items() if s is None]
    assert unanswered, f"no bulk create was in flight when the process died: {load.summary()}"

    async def settled() -> dict[str, int]:
        # the killed process's sessions end (and their transactions roll back)
        deadline = time.monotonic() + 20
        while await backends(fault_db.pg, fault_db.name) > 0:
            assert time.monotonic() < deadline, "sessions of the killed process linger"
            await asyncio.sleep(0.1)
        return await batch_counts(fault_db)

    counts = asyncio.run(settled())
    assert_all_or_nothing(load, counts)
    assert any(s == 200 for s in load.batches.values()), load.summary()

    # a new process on the same database works at once
    with fault_db.serve(name="after-kill9") as service:
        request_id = asyncio.run(create_request(service.url, "after"))
        response = httpx.post(
            f"{service.url}{WORKER}/links/bulk",
            headers={"X-API-Key": fault_db.worker_key},
            json={"links": [{"request_id": request_id, "service_type": "entity"}]},
            timeout=10,
        )
        assert response.status_code == 200, response.text


# --- SIGTERM: in-flight requests finish, then exit 0 -----------------------------------------


async def _sigterm_with_request_in_flight(db: FaultDatabase, service: Any) -> None:
    request_id = await create_request(service.url)
    links = [{"request_id": request_id, "service_type": "entity", "site_name": "slow"}] * 100
    blocker = await asyncpg.connect(db.url, timeout=5)
    slow: asyncio.Task[httpx.Response] | None = None
    try:
        # lock the request's row: the bulk create below waits on it (its links' foreign key)
        # until released, so it is still running when the signal comes
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", uuid.UUID(request_id)
        )
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            slow = asyncio.create_task(
                http.post(
                    f"{WORKER}/links/bulk",
                    headers={"X-API-Key": db.worker_key},
                    json={"links": links},
                )
            )
            deadline = time.monotonic() + 10
            while await lock_waiters(db) < 1:  # until the bulk create waits on the lock
                assert not slow.done(), slow.result().text
                assert time.monotonic() < deadline, "the bulk create never reached the database"
                await asyncio.sleep(0.05)
            signalled = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.5)
            assert service.process.poll() is None, "exited with a request in flight"
            assert not slow.done()
            # no new connections are taken while shutting down
            async with httpx.AsyncClient(base_url=service.url, timeout=2) as fresh:
                with pytest.raises(httpx.TransportError):
                    await fresh.get("/healthz")
            await tx.rollback()
            response = await asyncio.wait_for(slow, 15)
            assert response.status_code == 200, response.text
            assert response.json() == {"success": True, "created": 100}
        code = await asyncio.to_thread(service.process.wait, 20)
        assert code == 0, f"exit status {code} after SIGTERM"
        assert time.monotonic() - signalled < 15
    finally:
        if slow is not None and not slow.done():
            slow.cancel()
            await asyncio.gather(slow, return_exceptions=True)
        await blocker.close()
    rows = await db.count("SELECT count(*) FROM links WHERE site_name = 'slow'")
    assert rows == 100


def test_sigterm_finishes_requests_in_flight(fault_db: FaultDatabase) -> None:
    with fault_db.serve(dispatcher=True, name="sigterm") as service:
        asyncio.run(_sigterm_with_request_in_flight(fault_db, service))
