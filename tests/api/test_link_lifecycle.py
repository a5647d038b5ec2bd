"""Every link transition driven through the API, and a random mix of operations: after each
step, every server's ``active_tasks`` equals its links queued, running or connecting."""

from __future__ import annotations

import random
from typing import Any

from assign.services.context import Context
from tests.factories import ADMIN, WORKER, Factory
from tests.invariants import assert_active_tasks_consistent

ALL = "pending,queued,running,completed,failed,canceled,connect,connecting"


async def _status(factory: Factory, link_id: str, request_id: str) -> tuple[str, str | None]:
    for link in await factory.list_links(request_id=request_id, status=ALL):
        if link["id"] == link_id:
            return link["status"], link["server_id"]
    raise AssertionError(f"link {link_id} not found")


async def test_every_transition_keeps_active_tasks(factory: Factory, ctx: Context) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request(status="running")
    a, b, c, d = await factory.links(request, 4, max_retries=1)
    rid = request["id"]

    async def step(expected: dict[str, Any], tasks: int) -> None:
        for link_id, status in expected.items():
            assert (await _status(factory, link_id, rid))[0] == status
        counts = await assert_active_tasks_consistent(ctx)
        assert counts[server["id"]] == tasks

    async def put(path: str, body: Any = None) -> None:
        response = await factory.client.put(f"{WORKER}{path}", json=body, headers=factory.worker)
        assert response.status_code == 200, response.text

    assert (await factory.assign(a["id"], server)).status_code == 200  # assign
    await step({a["id"]: "queued"}, 1)
    await put(f"/servers/{server['id']}/status", {"status": "maintenance"})  # release
    await step({a["id"]: "pending"}, 0)
    await put(f"/servers/{server['id']}/status", {"status": "online"})
    for link in (a, b, c):
        assert (await factory.assign(link["id"], server)).status_code == 200
    await step({a["id"]: "queued", b["id"]: "queued", c["id"]: "queued"}, 3)
    assert len(await factory.claim(server)) == 3  # claim
    await step({a["id"]: "running", b["id"]: "running", c["id"]: "running"}, 3)
    assert (await factory.result(a["id"], server, profile_url="https://p/a")).status_code == 200
    await step({a["id"]: "completed"}, 2)  # succeed
    assert (await factory.result(b["id"], server, status="failed")).status_code == 200
    await step({b["id"]: "failed"}, 1)  # fail
    await put(f"/links/{b['id']}/retry")  # retry
    await step({b["id"]: "pending"}, 1)
    assert (await factory.assign(b["id"], server)).status_code == 200
    assert len(await factory.claim(server)) == 1
    assert (await factory.result(b["id"], server, status="failed")).status_code == 200
    await put("/links/mark-final-failed", {"request_id": rid})  # exhaust
    await step({b["id"]: "canceled"}, 1)
    assert (await factory.assign(d["id"], server)).status_code == 200
    await step({d["id"]: "queued"}, 2)

    await put(f"/requests/{rid}/connect")  # connect a; cancel c (running) and d (queued)
    await step({a["id"]: "connect", c["id"]: "canceled", d["id"]: "canceled"}, 0)
    (claimed,) = await factory.claim(server)  # claim a connect link
    assert claimed["id"] == a["id"]
    await step({a["id"]: "connecting"}, 1)
    assert (await factory.result(a["id"], server, status="failed")).status_code == 200
    await step({a["id"]: "failed"}, 0)
    await put(f"/links/{a['id']}/retry")  # connect-phase retry: back to connect, same server
    assert await _status(factory, a["id"], rid) == ("connect", server["id"])
    await step({}, 0)
    assert len(await factory.claim(server)) == 1
    assert (await factory.result(a["id"], server, post_url="https://x/a")).status_code == 200
    await step({a["id"]: "completed"}, 0)
    await put(f"/requests/{rid}/complete")
    await step({}, 0)


class RandomOperations:
    """The worker and tool operations of the random run, each picking its target with ``rng``."""

    def __init__(
        self, factory: Factory, rng: random.Random, servers: list[Any], requests: list[Any]
    ) -> None:
        self.factory = factory
        self.rng = rng
        self.servers = servers
        self.requests = requests
        self.seen: set[str] = set()  # link statuses the run went through

    async def put(self, path: str, body: Any = None) -> int:
        factory = self.factory
        response = await factory.client.put(f"{WORKER}{path}", json=body, headers=factory.worker)
        assert response.status_code < 500, response.text
        return response.status_code

    async def create(self) -> None:
        rng, factory = self.rng, self.factory
        request = rng.choice(self.requests)
        server = rng.choice([None, None, *self.servers])
        items = [
            {
                "request_id": request["id"],
                "service_type": "entity",
                "max_retries": rng.randint(0, 2),
                **({"server_id": server["id"]} if server else {}),
            }
            for _ in range(rng.randint(1, 4))
        ]
        response = await factory.client.post(
            f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
        )
        assert response.status_code in (200, 409)  # 409: the request is closed

    async def assign(self) -> None:
        pending = await self.factory.list_links()
        if pending:
            link, server = self.rng.choice(pending), self.rng.choice(self.servers)
            response = await self.factory.assign(link["id"], server)
            assert response.status_code in (200, 409), response.text

    async def claim(self) -> None:
        await self.factory.claim(self.rng.choice(self.servers), limit=self.rng.randint(1, 3))

    async def report(self) -> None:
        rng = self.rng
        working = await self.factory.list_links(status="running,connecting")
        if working:
            link = rng.choice(working)
            server = next(s for s in self.servers if s["id"] == link["server_id"])
            status = rng.choice(["completed", "completed", "failed"])
            profile = rng.choice([None, "https://p"])
            response = await self.factory.result(
                link["id"], server, status=status, profile_url=profile
            )
            assert response.status_code == 200, response.text
            self.seen.add(status)

    async def server_status(self) -> None:
        status = self.rng.choice(["online", "online", "offline", "maintenance"])
        server = self.rng.choice(self.servers)
        assert await self.put(f"/servers/{server['id']}/status", {"status": status}) == 200

    async def retry(self) -> None:
        failed = await self.factory.list_links(status="failed")
        if failed:
            assert await self.put(f"/links/{self.rng.choice(failed)['id']}/retry") in (200, 409)

    async def bulk_retry(self) -> None:
        failed = await self.factory.list_links(status="failed")
        if failed:
            ids = [f["id"] for f in failed]
            assert await self.put("/links/bulk-retry", {"link_ids": ids}) == 200

    async def final(self) -> None:
        assert await self.put("/links/mark-final-failed") == 200

    async def connect(self) -> None:
        assert await self.put(f"/requests/{self.rng.choice(self.requests)['id']}/connect") == 200

    async def complete(self) -> None:
        assert await self.put(f"/requests/{self.rng.choice(self.requests)['id']}/complete") == 200


async def test_random_operations_keep_active_tasks(factory: Factory, ctx: Context) -> None:
    rng = random.Random(20251201)
    servers = [await factory.server(max_threads=rng.randint(1, 4)) for _ in range(3)]
    requests = [await factory.request(status="running") for _ in range(4)]
    ops = RandomOperations(factory, rng, servers, requests)
    seen = ops.seen
    create, assign, claim, report = ops.create, ops.assign, ops.claim, ops.report
    server_status, retry, bulk_retry = ops.server_status, ops.retry, ops.bulk_retry
    final, connect, complete = ops.final, ops.connect, ops.complete

    operations = [create] * 6 + [assign] * 10 + [claim] * 6 + [report] * 10
    operations += [server_status, retry, bulk_retry, final, connect, complete]
    for n in range(120):
        await rng.choice(operations)()
        if n % 5 == 4:
            await assert_active_tasks_consistent(ctx)
            stats = await factory.client.get(f"{ADMIN}/stats", headers=factory.admin)
            seen.update(stats.json()["links"])
    # the mix really went through the state machine
    assert {"pending", "queued", "running", "completed", "failed", "canceled"} <= seen
    counts = await assert_active_tasks_consistent(ctx)
    for server in servers:
        got = await factory.get_server(server["id"])
        assert got["active_tasks"] == counts[server["id"]] >= 0
