"""The clients of ``bench/load.py``: tool servers that claim and report, and assign clients
that read, bulk create and assign; every answer is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

WORKER = "/api/v1/worker"
TOOL = "/api/v1/tool"
ADMIN = "/api/v1/admin"
#: answers that are part of the protocol: an assign that lost a race (link taken, server full)
EXPECTED = {("assign", 409)}


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: Counter[tuple[str, int | str]] = field(default_factory=Counter)
    completed_ids: list[str] = field(default_factory=list)
    samples: list[tuple[str, int | str, str]] = field(default_factory=list)

    def record(self, op: str, status: int | str, seconds: float, body: str = "") -> None:
        self.latency[op].append(seconds)
        self.status[(op, status)] += 1
        unexpected = (op, status) not in EXPECTED and not (isinstance(status, int) and status < 300)
        if unexpected and len(self.samples) < 10:
            self.samples.append((op, status, body[:300]))


class Load:
    def __init__(self, bases: list[str], worker_key: str, requests: list[str], stats: Stats):
        self.bases = bases
        self.worker_key = worker_key
        self.requests = requests
        self.stats = stats
        self.stop = asyncio.Event()
        # idle connections are dropped well before the server's keep-alive timeout (5 s), so a
        # request never goes out on a connection the server is closing at that moment
        limits = httpx.Limits(
            max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=2.0
        )
        self.http = [httpx.AsyncClient(base_url=b, timeout=60, limits=limits) for b in bases]

    async def close(self) -> None:
        for client in self.http:
            await client.aclose()

    async def call(
        self, op: str, client: httpx.AsyncClient, method: str, path: str, key: str, **kw: Any
    ) -> tuple[int | str, Any]:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, headers={"X-API-Key": key}, **kw)
        except httpx.HTTPError as exc:
            self.stats.record(op, type(exc).__name__, time.perf_counter() - started, str(exc))
            return type(exc).__name__, None
        self.stats.record(op, response.status_code, time.perf_counter() - started, response.text)
        body = None
        if response.status_code < 300:
            with contextlib.suppress(ValueError):
                body = response.json()
        return response.status_code, body

    async def tool_client(self, index: int, key: str) -> None:
        client = self.http[index % len(self.http)]
        last_beat = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_beat > 5:
                await self.call("heartbeat", client, "POST", f"{TOOL}/heartbeat", key, json={})
                last_beat = time.monotonic()
            status, body = await self.call(
                "claim", client, "POST", f"{TOOL}/links/claim", key, json={"limit": 10}
            )
            links = body["data"] if status == 200 and body else []
            if not links:
                await asyncio.sleep(0.2)
                continue
            await asyncio.gather(*(self.work(client, key, link) for link in links))

    async def work(self, client: httpx.AsyncClient, key: str, link: dict[str, Any]) -> None:
        await asyncio.sleep(random.uniform(0.01, 0.2))
        if random.random() < 0.9:
            result = {"status": "completed", "profile_url": f"https://site.example/u/{link['id']}"}
        else:
            result = {"status": "failed", "error": "captcha not solved"}
        status, _ = await self.call(
            "result", client, "PUT", f"{TOOL}/links/{link['id']}/result", key, json=result
        )
        if status == 200 and result["status"] == "completed":
            self.stats.completed_ids.append(link["id"])

    async def worker_client(self, index: int) -> None:
        client = self.http[index % len(self.http)]
        key = self.worker_key
        while not self.stop.is_set():
            roll = random.random()
            if roll < 0.15:
                await self.bulk(client)
            elif roll < 0.45:
                await self.assign(client)
            elif roll < 0.65:
                await self.call("list_links", client, "GET", f"{WORKER}/links?limit=50", key)
            elif roll < 0.80:
                await self.call("list_requests", client, "GET", f"{WORKER}/requests", key)
            elif roll < 0.90:
                await self.call("available", client, "GET", f"{WORKER}/servers/available", key)
            else:
                request_id = random.choice(self.requests)
                await self.call(
                    "link_count", client, "GET", f"{WORKER}/requests/{request_id}/links/count", key
                )

    async def bulk(self, client: httpx.AsyncClient) -> None:
        request_id = random.choice(self.requests)
        links = []
        for i in range(20):
            link: dict[str, Any] = {
                "request_id": request_id,
                "service_type": "entity",
                "site_name": f"site-{random.randrange(200)}",
                "username": f"user{random.randrange(10_000)}",
                "password": "secret",
                "details": {"keyword": f"keyword {i}"},
            }
            if random.random() < 0.2:  # paced per posting account by the dispatcher
                link["email"] = f"account{random.randrange(500)}@example.com"
            links.append(link)
        await self.call(
            "bulk", client, "POST", f"{WORKER}/links/bulk", self.worker_key, json={"links": links}
        )

    async def assign(self, client: httpx.AsyncClient) -> None:
        key = self.worker_key
        status, servers = await self.call(
            "available", client, "GET", f"{WORKER}/servers/available", key
        )
        if status != 200 or not servers or not servers["data"]:
            return
        status, pending = await self.call(
            "list_links", client, "GET", f"{WORKER}/links?limit=20", key
        )
        if status != 200 or not pending or not pending["data"]:
            return
        link = random.choice(pending["data"])
        server = random.choice(servers["data"])
        await self.call(
            "assign", client, "PUT", f"{WORKER}/links/{link['id']}/assign", key,
            json={"server_id": server["id"]},
        )  # fmt: skip
