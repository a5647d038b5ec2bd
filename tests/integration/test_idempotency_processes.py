"""The same Idempotency-Key sent at once through two API processes creates once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, PG_SKIP
from tests.integration.procs import Processes, assign_env, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_ADMIN_URL is None, reason=PG_SKIP),
    pytest.mark.timeout(120),
]
ADMIN_KEY = "asg_admin-key-of-the-idempotency-test-0123456789"


async def test_concurrent_replays_through_two_processes_create_once(
    scratch_db: str, procs: Processes, db: asyncpg.Connection
) -> None:
    env = assign_env(scratch_db, admin_key=ADMIN_KEY)
    worker_key = (await run_cli(env, "server", "add", "assign-1", "--service", "assign")).split()[
        -1
    ]
    (_, first), (_, second) = await asyncio.gather(
        procs.serve("api-1", env), procs.serve("api-2", env)
    )
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            f"{first}/api/v1/admin/requests",
            json={"service_type": "entity", "name": "c"},
            headers={"X-API-Key": ADMIN_KEY},
        )
        request_id = created.json()["data"]["id"]
        body = {
            "links": [{"request_id": request_id, "service_type": "entity"} for _ in range(2000)]
        }
        for round_ in range(3):
            headers = {"X-API-Key": worker_key, "Idempotency-Key": f"batch-{round_}"}
            answers = await asyncio.gather(
                *(
                    http.post(f"{base}/api/v1/worker/links/bulk", json=body, headers=headers)
                    for base in (first, second, first, second)
                )
            )
            assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
            assert all(a.json() == {"success": True, "created": 2000} for a in answers)
            count = await db.fetchval(
                "SELECT count(*) FROM links WHERE request_id = $1", uuid.UUID(request_id)
            )
            assert count == 2000 * (round_ + 1)
