"""SIGTERM to ``assign serve``: a request in progress still gets its answer, new connections are
refused meanwhile, and the process exits once that request is done."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, PG_SKIP
from tests.factories import TOOL, Factory
from tests.integration.procs import Processes, assign_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_ADMIN_URL is None, reason=PG_SKIP),
    pytest.mark.timeout(120),
]


async def test_sigterm_lets_the_request_in_progress_finish(
    procs: Processes, db: asyncpg.Connection, scratch_db: str, local_factory: Factory
) -> None:
    server = await local_factory.server(max_threads=2)
    api, base = await procs.serve("api", assign_env(scratch_db, db_pool_size=2))

    # hold the server's row, so its heartbeat (which updates that row) waits inside the API
    blocker = await asyncpg.connect(scratch_db)
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute(
            "SELECT 1 FROM servers WHERE id = $1 FOR UPDATE", uuid.UUID(server["id"])
        )
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            beat = asyncio.create_task(
                http.post(f"{TOOL}/heartbeat", json={}, headers=local_factory.tool(server))
            )
            deadline = time.monotonic() + 20
            while not await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE '%servers%'"
            ):
                assert time.monotonic() < deadline, "the heartbeat never reached the database"
                assert not beat.done(), beat.result().text
                await asyncio.sleep(0.02)

            api.send(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert api.alive(), "exited with a request in progress"
            assert not beat.done()
            async with httpx.AsyncClient(base_url=base, timeout=2) as fresh:
                with pytest.raises(httpx.TransportError):  # no longer accepting
                    await fresh.get("/healthz")

            await holding.rollback()
            released = time.monotonic()
            response = await asyncio.wait_for(beat, 10)
    finally:
        await blocker.close()

    assert response.status_code == 200, response.text
    assert response.json()["data"]["last_health_check"] is not None
    code = await api.wait_exit(10)
    exit_seconds = time.monotonic() - released
    # uvicorn re-raises the SIGTERM it caught once shut down, so the exit status is the
    # signal's (-15) unless the command turns a clean shutdown into 0
    assert code in (0, -signal.SIGTERM), api.log_tail()
    assert exit_seconds < 8, f"exit took {exit_seconds:.2f} s after the request could finish"
    records = api.records()
    assert not [r for r in records if r.get("level") in ("error", "critical")], api.log_tail()
    assert any(
        r.get("msg") == "request" and r.get("path") == f"{TOOL}/heartbeat" and r["status"] == 200
        for r in records
    )
    print(f"\nassign serve: exit {code}, {exit_seconds * 1000:.0f} ms after the request could end")
