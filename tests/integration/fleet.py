"""A simulated fleet of tool servers over HTTP, and a sampler of the slot invariants in SQL.

Each simulated server heartbeats, claims whatever is queued for it whenever it has a free thread
(asking for up to 1,000, so only the dispatcher keeps it within ``max_threads``), works each
link a few milliseconds and reports it completed, or failed for a fixed few, which the
dispatcher then retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.integration.light_client import LightClient
from tests.integration.procs import ADMIN, TOOL, WORKER


def fails(link_id: str, retry_count: int) -> bool:
    """Whether the simulated work of this attempt fails: about 5% of links fail their first
    attempt and a third of those their second too; a third attempt always succeeds."""
    h = int(link_id.replace("-", "")[:8], 16)
    return (retry_count == 0 and h % 20 == 0) or (retry_count == 1 and h % 60 == 0)


@dataclass
class SimServer:
    id: str
    name: str
    key: str
    max_threads: int
    service_types: list[str]
    in_flight: int = 0  # claimed and not yet reported
    peak: int = 0
    freed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class Record:
    """What the simulated fleet saw; every list of problems must end empty."""

    claims: list[tuple[str, int]] = field(default_factory=list)  # (link id, retry_count)
    failures: Counter[str] = field(default_factory=Counter)
    completed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    #: calls answered 503 (the API's database pool was exhausted or the database away) or cut
    #: off in transit; heartbeats and claims are simply made again, result reports sent again
    unavailable: int = 0

    def duplicate_claims(self) -> list[tuple[str, int]]:
        return [attempt for attempt, n in Counter(self.claims).items() if n > 1]


@dataclass
class Feed:
    """Keys and servers made through the API for one run."""

    admin_key: str
    assign_key: str
    servers: list[SimServer]
    request_ids: list[str]


async def make_feed(
    http: httpx.AsyncClient,
    *,
    admin_key: str,
    assign_key: str,
    threads: list[int],
    requests: int,
) -> Feed:
    """Tool servers (the first accepts ``social`` only), rate limits off, and requests."""
    admin = {"X-API-Key": admin_key}
    response = await http.put(
        f"{ADMIN}/settings/rate_limit",
        json={"settings": {"max_posts_per_day": "1000000", "cooldown_minutes": "0"}},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    servers = []
    for i, n in enumerate(threads):
        types = ["social"] if i == 0 else []
        body: dict[str, Any] = {"name": f"tool-{i}", "service": "tool", "max_threads": n}
        if types:
            body["service_types"] = types
        response = await http.post(f"{ADMIN}/servers", json=body, headers=admin)
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        servers.append(SimServer(str(data["id"]), data["name"], data["api_key"], n, types))
    request_ids = []
    for r in range(requests):
        kind = "social" if r % 2 else "entity"
        response = await http.post(
            f"{ADMIN}/requests",
            json={"service_type": kind, "name": f"campaign-{r}"},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        request_ids.append(str(response.json()["data"]["id"]))
    return Feed(admin_key, assign_key, servers, request_ids)


async def add_links(http: httpx.AsyncClient, feed: Feed, per_request: int) -> None:
    """``per_request`` links on each request of ``feed``, in one bulk call with the requests
    interleaved, so the work in flight at any time spreads over every request (the requests
    share a priority, and the links of one call their creation time)."""
    items = [
        {
            "request_id": request_id,
            "service_type": "social" if r % 2 else "entity",
            "site_name": f"site-{r}-{i}.example",
            "email": f"account{i % 200}@example.com",
            "password": f"pw-{r}-{i}",
        }
        for i in range(per_request)
        for r, request_id in enumerate(feed.request_ids)
    ]
    response = await http.post(
        f"{WORKER}/links/bulk",
        json={"links": items},
        headers={"X-API-Key": feed.assign_key},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == len(items)


class ServerLoop:
    """One simulated tool server: heartbeats, claims, works and reports until ``stop``."""

    def __init__(
        self, http: LightClient, server: SimServer, record: Record, stop: asyncio.Event, seed: int
    ) -> None:
        self.http = http
        self.server = server
        self.record = record
        self.stop = stop
        self.rng = random.Random(seed)
        self.working: set[asyncio.Task[None]] = set()

    async def heartbeat(self) -> None:
        server, record = self.server, self.record
        while not self.stop.is_set():
            try:
                response = await self.http.post(
                    f"{TOOL}/heartbeat", json={}, headers=server.headers
                )
                if response.status_code == 503:
                    record.unavailable += 1
                elif response.status_code != 200:
                    record.problems.append(f"{server.name} heartbeat {response.status_code}")
            except httpx.TransportError:
                record.unavailable += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 2.0)

    async def work(self, link: dict[str, Any]) -> None:
        server = self.server
        await asyncio.sleep(self.rng.uniform(0.005, 0.03))
        link_id, attempt = link["id"], link["retry_count"]
        failed = fails(link_id, attempt)
        body = (
            {"status": "failed", "error": "simulated failure"}
            if failed
            else {
                "status": "completed",
                "profile_url": f"https://{link['site_name']}/u/{link_id}",
                "post_url": f"https://{link['site_name']}/p/{link_id}",
            }
        )
        # counted out before the report is sent: the slot is freed when the report commits,
        # later, so this count never exceeds what the database holds on the server
        server.in_flight -= 1
        server.freed.set()
        if await self.report(link_id, attempt, body):
            if failed:
                self.record.failures[link_id] += 1
            else:
                self.record.completed.append(link_id)

    async def report(self, link_id: str, attempt: int, body: dict[str, Any]) -> bool:
        """Send a result, again after a 503 or a dropped connection, as a tool server would;
        True once the database has it."""
        server, record = self.server, self.record
        uncertain = False  # whether an earlier try may have been applied
        for n in range(10):
            try:
                response = await self.http.put(
                    f"{TOOL}/links/{link_id}/result", json=body, headers=server.headers
                )
            except httpx.TransportError:
                record.unavailable += 1
                uncertain = True
                await asyncio.sleep(0.2 * (n + 1))
                continue
            if response.status_code == 503:
                record.unavailable += 1
                uncertain = True
                await asyncio.sleep(0.2 * (n + 1))
                continue
            if response.status_code == 200:
                return True
            if (
                response.status_code == 409
                and uncertain
                and await self.landed(link_id, attempt, body)
            ):
                return True
            record.problems.append(
                f"{server.name} result {link_id}: {response.status_code} {response.text}"
            )
            return False
        record.problems.append(f"{server.name} result {link_id}: gave up after 10 tries")
        return False

    async def landed(self, link_id: str, attempt: int, body: dict[str, Any]) -> bool:
        """Whether this attempt's result is already recorded (an earlier try went through)."""
        response = await self.http.get(f"{TOOL}/links/{link_id}", headers=self.server.headers)
        if response.status_code == 404:  # no longer this server's: it failed and was retried
            return body["status"] == "failed"
        data = response.json()["data"] if response.status_code == 200 else {}
        if body["status"] == "failed":
            return data.get("status") == "failed" or data.get("retry_count", -1) > attempt
        return data.get("status") == "completed" and data.get("retry_count") == attempt

    def check(self, link: dict[str, Any]) -> None:
        server, problems = self.server, self.record.problems
        if link["server_id"] != server.id or link["status"] not in ("running", "connecting"):
            problems.append(f"{server.name} got {link['id']} as {link['status']}")
        if server.service_types and link["service_type"] not in server.service_types:
            problems.append(f"{server.name} got a {link['service_type']} link")
        site = link["site_name"]  # site-R-I.example carries password pw-R-I
        if link.get("password") != "pw-" + site[len("site-") : -len(".example")]:
            problems.append(f"{server.name} got a wrong password for {link['id']}")

    async def claim(self) -> float:
        """One claim, its links set to work; how long to wait before the next."""
        server, record = self.server, self.record
        try:
            response = await self.http.post(
                f"{TOOL}/links/claim", json={"limit": 1000}, headers=server.headers
            )
        except httpx.HTTPError as exc:
            record.problems.append(f"{server.name} claim {exc!r}")
            return 0.1
        if response.status_code == 503:  # nothing was claimed: ask again shortly
            record.unavailable += 1
            return 0.2
        if response.status_code != 200:
            record.problems.append(f"{server.name} claim {response.status_code}")
            return 0.1
        claimed = response.json()["data"]
        server.in_flight += len(claimed)
        server.peak = max(server.peak, server.in_flight)
        if server.in_flight > server.max_threads:
            record.problems.append(
                f"{server.name} holds {server.in_flight} links, max_threads {server.max_threads}"
            )
        for link in claimed:
            record.claims.append((link["id"], link["retry_count"]))
            self.check(link)
            task = asyncio.create_task(self.work(link))
            self.working.add(task)
            task.add_done_callback(self.working.discard)
        return 0.03 if claimed else 0.15

    async def run(self) -> None:
        """Until ``stop``; then it finishes the work it holds."""
        server = self.server
        beat = asyncio.create_task(self.heartbeat())
        try:
            while not self.stop.is_set():
                if server.in_flight >= server.max_threads:  # full: wait for a report to free one
                    server.freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(server.freed.wait(), 0.5)
                    continue
                await asyncio.sleep(await self.claim())
        finally:
            await asyncio.gather(*list(self.working), return_exceptions=True)
            await beat


async def run_server(
    http: LightClient, server: SimServer, record: Record, stop: asyncio.Event, seed: int
) -> None:
    """One tool server until ``stop``; then it finishes the work it holds."""
    await ServerLoop(http, server, record, stop, seed).run()


SAMPLE_SQL = """
SELECT s.name, s.max_threads, s.active_tasks, coalesce(f.n, 0) AS in_flight
FROM servers s
LEFT JOIN (
    SELECT server_id, count(*) AS n FROM links
    WHERE status IN ('queued', 'running', 'connecting') GROUP BY server_id
) f ON f.server_id = s.id
WHERE s.service = 'tool'
"""


async def sample(conn: asyncpg.Connection, record: Record, stop: asyncio.Event) -> None:
    """Every 100 ms, in one snapshot: active_tasks and in-flight links within max_threads, and
    active_tasks equal to the in-flight links."""
    while not stop.is_set():
        for row in await conn.fetch(SAMPLE_SQL):
            name, cap, tasks, n = row["name"], row["max_threads"], row["active_tasks"], row[3]
            if tasks > cap or n > cap or tasks != n:
                record.problems.append(
                    f"sample: {name} active_tasks {tasks}, in flight {n}, max_threads {cap}"
                )
        record.samples += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def link_counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM links GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def open_requests(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM requests WHERE status <> 'completed'"))
