"""Every pooled connection of ``assign serve`` busy: a 503 once the wait for one times out,
never a 500 (on a private PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.factories import WORKER
from tests.faults.checks import lock_waiters
from tests.faults.conftest import FaultDatabase
from tests.faults.load import QUICK, create_request

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def _saturated(db: FaultDatabase, service: Any) -> None:
    request_id = await create_request(service.url)
    blocker = await asyncpg.connect(db.url, timeout=5)
    holders: list[asyncio.Task[httpx.Response]] = []
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", uuid.UUID(request_id)
        )
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            body = {"links": [{"request_id": request_id, "service_type": "entity"}]}
            headers = {"X-API-Key": db.worker_key}
            # two bulk creates wait on the lock, holding both connections the pool may open
            holders = [
                asyncio.create_task(http.post(f"{WORKER}/links/bulk", headers=headers, json=body))
                for _ in range(2)
            ]
            deadline = time.monotonic() + 10
            while await lock_waiters(db) < 2:
                assert not any(h.done() for h in holders), [h.result().text for h in holders]
                assert time.monotonic() < deadline, "the bulk creates never reached the database"
                await asyncio.sleep(0.05)

            async def timed(method: str, path: str, **kw: Any) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                response = await http.request(method, path, headers=headers, **kw)
                return response, time.monotonic() - started

            answers = await asyncio.gather(
                timed("GET", f"{WORKER}/links"),
                timed("POST", f"{WORKER}/links/bulk", json=body),
                timed("GET", f"{WORKER}/requests"),
            )
            for response, seconds in answers:
                assert response.status_code == 503, response.text
                assert response.json() == {"success": False, "error": "Database unavailable"}
                assert response.headers.get("retry-after") == "1"
                assert seconds < QUICK + 3, f"answered after {seconds:.1f} s"
            await tx.rollback()
            for holder in holders:
                response = await asyncio.wait_for(holder, 15)
                assert response.status_code == 200, response.text
            response, _ = await timed("POST", f"{WORKER}/links/bulk", json=body)
            assert response.status_code == 200, response.text
    finally:
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        await blocker.close()
    assert await db.count("SELECT count(*) FROM links") == 3


def test_pool_exhausted_answers_503(fault_db: FaultDatabase) -> None:
    with fault_db.serve(name="saturated", env={"ASSIGN_DB_POOL_SIZE": "1"}) as service:
        asyncio.run(_saturated(fault_db, service))
