"""Clients that call real ``assign serve`` processes while the fault tests break things,
recording every answer."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import ADMIN, TOOL, WORKER
from tests.faults.conftest import ADMIN_KEY

#: the longest any answer may take while the database fails (a hang is longer)
QUICK = 5.0


@dataclass
class Call:
    op: str
    started: float
    seconds: float
    status: int | None  # None: no answer (transport error)
    body: Any = None
    batch: str | None = None


@dataclass
class Load:
    """Clients calling the API until ``stop`` is set; every call is recorded."""

    base: str
    worker_key: str
    tool_key: str
    request_id: str
    batch_size: int
    calls: list[Call] = field(default_factory=list)
    batches: dict[str, int | None] = field(default_factory=dict)  # marker -> status
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(
        self, http: httpx.AsyncClient, op: str, method: str, path: str, key: str, **kw: Any
    ) -> Call:
        started = time.monotonic()
        status: int | None = None
        body: Any = None
        try:
            response = await http.request(method, path, headers={"X-API-Key": key}, **kw)
            status = response.status_code
            with contextlib.suppress(ValueError):
                body = response.json()
        except httpx.TransportError:
            pass
        record = Call(op, started, time.monotonic() - started, status, body)
        self.calls.append(record)
        return record

    async def bulk(self, http: httpx.AsyncClient) -> Call:
        marker = f"batch-{uuid.uuid4().hex}"
        self.batches[marker] = None
        links = [
            {"request_id": self.request_id, "service_type": "entity", "site_name": marker,
             "details": {"n": i}}
            for i in range(self.batch_size)
        ]  # fmt: skip
        record = await self.call(
            http, "bulk", "POST", f"{WORKER}/links/bulk", self.worker_key, json={"links": links}
        )
        record.batch = marker
        self.batches[marker] = record.status
        return record

    async def worker_client(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            if random.random() < 0.5:
                await self.bulk(http)
            else:
                await self.call(http, "list", "GET", f"{WORKER}/links?limit=50", self.worker_key)
            await asyncio.sleep(0.02)

    async def tool_client(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            await self.call(http, "heartbeat", "POST", f"{TOOL}/heartbeat", self.tool_key, json={})
            claim = await self.call(
                http, "claim", "POST", f"{TOOL}/links/claim", self.tool_key, json={"limit": 10}
            )
            for link in (claim.body or {}).get("data", []) if claim.status == 200 else []:
                await self.call(
                    http, "result", "PUT", f"{TOOL}/links/{link['id']}/result", self.tool_key,
                    json={"status": "completed", "profile_url": f"https://p/{link['id']}"},
                )  # fmt: skip
            await asyncio.sleep(0.05)

    def summary(self) -> str:
        counts = Counter((c.op, c.status) for c in self.calls)
        return ", ".join(
            f"{op} {status}: {n}" for (op, status), n in sorted(counts.items(), key=str)
        )


async def create_request(base: str, name: str = "faults") -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.post(
            f"{ADMIN}/requests",
            headers={"X-API-Key": ADMIN_KEY},
            json={"service_type": "entity", "name": name, "website": "https://example.com"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])
