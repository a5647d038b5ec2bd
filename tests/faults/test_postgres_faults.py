"""Faults on PostgreSQL and on the API process, against real ``assign serve`` processes.

* The database's connections are terminated and its server restarted while clients keep
  calling: every answer comes quickly (a 503 while the database is gone, never a 500 or a hang),
  ``/readyz`` fails and then recovers on its own, and bulk creates are all or nothing.
* The API process is killed with SIGKILL while bulk creates are being written: nothing partial.
* SIGTERM to ``assign serve``: the request in progress still gets its answer, then exit 0.
* Every pooled connection busy: a 503 once the wait for one times out, never a 500.
* A session terminated while its bulk create is writing: a quick 503, nothing stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from tests.faults.conftest import ADMIN_KEY, FaultDatabase, PrivatePostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKER = "/api/v1/worker"
TOOL = "/api/v1/tool"
ADMIN = "/api/v1/admin"
#: the longest any answer may take while the database fails (a hang is longer)
QUICK = 5.0
#: how long /readyz may take to recover once PostgreSQL is back
READY_WITHIN = 10.0
#: a session writing rows of links (a bulk create inserts them by INSERT or COPY)
WRITING_LINKS = "(query ILIKE 'INSERT INTO links%' OR query ILIKE 'COPY \"links\"%')"


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


async def batch_counts(db: FaultDatabase) -> dict[str, int]:
    rows = await db.pg.fetch(
        "SELECT site_name, count(*) FROM links WHERE site_name LIKE 'batch-%' GROUP BY site_name",
        database=db.name,
    )
    return {r[0]: int(r[1]) for r in rows}


def assert_all_or_nothing(load: Load, counts: dict[str, int]) -> None:
    """Every batch is all there or absent; every batch answered 2xx is all there."""
    n = load.batch_size
    partial = {m: c for m, c in counts.items() if c not in (0, n)}
    assert not partial, f"batches stored partially (marker: rows of {n}): {partial}"
    unknown = set(counts) - set(load.batches)
    assert not unknown, f"rows of batches never sent: {sorted(unknown)[:5]}"
    lost = [
        m for m, s in load.batches.items() if s is not None and 200 <= s < 300 and m not in counts
    ]
    assert not lost, f"{len(lost)} batch(es) answered 2xx but not stored, e.g. {lost[:3]}"


async def assert_active_tasks_consistent(db: FaultDatabase) -> None:
    rows = await db.pg.fetch(
        """
        SELECT s.name, s.active_tasks, count(l.id) AS n FROM servers s
        LEFT JOIN links l ON l.server_id = s.id AND l.status IN ('queued', 'running', 'connecting')
        GROUP BY s.id HAVING s.active_tasks <> count(l.id)
        """,
        database=db.name,
    )
    assert not rows, f"active_tasks != in-flight links: {[tuple(r) for r in rows]}"


async def backends(pg: PrivatePostgres, database: str) -> int:
    rows = await pg.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return int(rows[0][0])


async def lock_waiters(db: FaultDatabase) -> int:
    """Sessions of the database waiting on a lock (asked on a connection of its own: within a
    transaction PostgreSQL would answer from a snapshot of the statistics)."""
    rows = await db.pg.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        db.name,
    )
    return int(rows[0][0])


# --- (a) connections terminated, server restarted, under load --------------------------------


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


# --- (b) the API process killed in the middle of bulk creates --------------------------------


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


# --- (c) SIGTERM: in-flight requests finish, then exit 0 -------------------------------------


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


# --- (d) every pooled connection busy: 503 once the pool wait times out, never a 500 ----------


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


# --- (e) a session terminated in the middle of a bulk create ---------------------------------


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
