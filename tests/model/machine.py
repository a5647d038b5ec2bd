"""The state machine's plumbing: the app (httpx over ASGI) on a fresh database, drawing helpers,
the first server and request, and the invariants that compare every answer to the model after
each step. The rules that move links are in ``tests/model/rules.py``."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant

from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.engine import Database
from assign.domain.states import LinkStatus, Phase, RequestStatus
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import ADMIN, TOOL, WORKER, Factory
from tests.invariants import assert_active_tasks_consistent, check_attempts
from tests.model.model import (
    ACTIVE,
    COOLDOWN_MINUTES,
    EMAILS,
    MAX_POSTS_PER_DAY,
    RETRY_SECONDS,
    START,
    TYPES,
    UNFINISHED,
    MLink,
    Model,
    MRequest,
    MServer,
)

ALL_LINK_STATUSES = ",".join(s.value for s in LinkStatus)
ALL_REQUEST_STATUSES = ",".join(s.value for s in RequestStatus)
NIL = "00000000-0000-4000-8000-000000000000"  # an id nothing has


class Entropy:
    """Replaces ``os.urandom`` during a run, so the ids the app generates (UUID version 4) are
    the same each time an example is replayed: ties in dispatch order are broken by id, and
    hypothesis must see the same states again to shrink a failure."""

    rng = random.Random(0)

    @classmethod
    def reset(cls) -> None:
        cls.rng = random.Random(0)

    @classmethod
    def urandom(cls, n: int) -> bytes:
        return cls.rng.randbytes(n)


class MachineBase(RuleBasedStateMachine):
    """The app against a model; subclasses say which database to use (``prepare``)."""

    #: a clean, migrated database for one example: its URL
    prepare: Callable[[MachineBase], Awaitable[str]]

    def __init__(self) -> None:
        super().__init__()
        Entropy.reset()
        self.loop = asyncio.new_event_loop()
        self.model = Model()
        self.names = itertools.count(1)
        self.checks = 0
        self.loop.run_until_complete(self._open())

    @property
    def servers(self) -> dict[str, MServer]:
        return self.model.servers

    @property
    def requests(self) -> dict[str, MRequest]:
        return self.model.requests

    @property
    def links(self) -> dict[str, MLink]:
        return self.model.links

    async def _open(self) -> None:
        url = await type(self).prepare(self)
        config = make_settings(
            url, retry_base_seconds=RETRY_SECONDS, retry_max_seconds=RETRY_SECONDS
        )
        self.db = Database(config.database_url, pool_size=2)
        self.clock = FrozenClock(START)
        self.ctx = Context(
            db=self.db, settings=config, cipher=Cipher(TEST_SECRET), clock=self.clock
        )
        app = create_app(context=self.ctx, migrate=False)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://assign.test"
        )
        self.factory = await Factory.create(self.ctx, self.http)
        limits = {
            "max_posts_per_day": str(MAX_POSTS_PER_DAY),
            "cooldown_minutes": str(COOLDOWN_MINUTES),
        }
        response = await self.http.put(
            f"{ADMIN}/settings/rate_limit", json={"settings": limits}, headers=self.factory.admin
        )
        assert response.status_code == 200, response.text

    def teardown(self) -> None:
        async def close() -> None:
            await self.http.aclose()
            await self.db.dispose()

        try:
            self.loop.run_until_complete(close())
        finally:
            self.loop.close()
        if self.db.is_sqlite:  # each example had its own copy
            path = self.db.url.split("///", 1)[1]
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(awaitable)

    def call(self, method: str, path: str, *, expect: int, json: Any = None,
             params: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        response = self.run(
            self.http.request(method, path, json=json, params=params,
                              headers=headers if headers is not None else self.factory.worker)
        )  # fmt: skip
        assert response.status_code == expect, (
            f"{method} {path} {json or ''} answered {response.status_code} {response.text}, "
            f"the model expects {expect}"
        )
        return response

    def admin(self, method: str, path: str, *, expect: int, json: Any = None) -> httpx.Response:
        return self.call(method, f"{ADMIN}{path}", expect=expect, json=json,
                         headers=self.factory.admin)  # fmt: skip

    def draw_request(
        self, data: st.DataObject, *, unknown: bool = True, preferred: Sequence[MRequest] = ()
    ) -> MRequest | None:
        """Mostly one of ``preferred`` (if any), else any request; now and then an unknown id."""
        if preferred and data.draw(st.booleans(), label="preferred"):
            return data.draw(st.sampled_from(preferred))
        choices: list[MRequest | None] = list(self.requests.values())
        if unknown and data.draw(st.integers(0, 7), label="unknown") == 0:
            return None
        return data.draw(st.sampled_from(choices)) if choices else None

    def draw_server(self, data: st.DataObject, *, unknown: bool = True) -> MServer | None:
        """One of the servers; now and then (or when there are none) an unknown id."""
        choices: list[MServer | None] = list(self.servers.values())
        if unknown and data.draw(st.integers(0, 7), label="unknown") == 0:
            return None
        return data.draw(st.sampled_from(choices)) if choices else None

    def draw_link(self, data: st.DataObject, preferred: list[MLink]) -> MLink | None:
        """Mostly one of ``preferred`` (when there are any), else any link or an unknown id."""
        if preferred and data.draw(st.integers(0, 3)) > 0:
            return data.draw(st.sampled_from(preferred))
        return data.draw(st.sampled_from([*self.links.values(), None]))

    def heartbeat(self, data: st.DataObject) -> None:
        server = self.draw_server(data, unknown=False)
        assert server is not None
        self.beat(server, data.draw(st.one_of(st.none(), st.integers(0, 3)), label="threads"))

    def beat(self, server: MServer, active_threads: int | None = None) -> None:
        body = None if active_threads is None else {"active_threads": active_threads}
        answer = self.call("POST", f"{TOOL}/heartbeat", json=body, expect=200,
                           headers={"X-API-Key": server.key}).json()["data"]  # fmt: skip
        server.last_health_check = self.now
        if server.status == "offline":
            server.status = "online"
        assert answer["status"] == server.status

    # --- setting up servers and requests -------------------------------------------------------

    def add_server(self, threads: int, priority: int, types: list[str], status: str) -> None:
        body = {"name": f"tool-{next(self.names)}", "service": "tool", "max_threads": threads,
                "priority": priority, "service_types": types, "status": status}  # fmt: skip
        data = self.admin("POST", "/servers", json=body, expect=201).json()["data"]
        assert data["active_tasks"] == 0 and data["status"] == status
        self.servers[data["id"]] = MServer(
            data["id"], data["api_key"], threads, priority, types, status, self.now
        )

    def add_request(self, service_type: str, priority: int, connect_config: bool) -> None:
        body: dict[str, Any] = {"service_type": service_type, "priority": priority,
                                "name": f"campaign-{next(self.names)}"}  # fmt: skip
        if connect_config:
            body["config"] = {"connect": True}
        data = self.admin("POST", "/requests", json=body, expect=201).json()["data"]
        assert data["status"] == "pending" and data["created_links"] == 0
        self.requests[data["id"]] = MRequest(
            data["id"], service_type, priority, connect_config, self.now
        )

    server_args = {
        "threads": st.integers(1, 4),
        "priority": st.integers(0, 1),
        "types": st.sampled_from([[], [], ["entity"], ["social"]]),
    }
    request_args = {
        "service_type": st.sampled_from(TYPES),
        "priority": st.integers(0, 2),
        "connect_config": st.booleans(),
    }

    @initialize(**server_args)
    def first_server(self, threads: int, priority: int, types: list[str]) -> None:
        self.add_server(threads, priority, types, "online")

    # --- what must hold after every step -------------------------------------------------------

    @invariant()
    def app_equals_model(self) -> None:
        self.checks += 1
        self.check_links()
        self.check_attempts()
        self.check_servers()
        requests = self.call(
            "GET", f"{ADMIN}/requests", expect=200, headers=self.factory.admin,
            params={"status": ALL_REQUEST_STATUSES, "limit": 1000},
        ).json()["data"]  # fmt: skip
        assert {item["id"] for item in requests} == set(self.requests)
        for item in requests:
            request = self.requests[item["id"]]
            got = (item["status"], item["created_links"])
            assert got == (request.status, request.created_links), f"request {request.id}"
            self.check_counts(request)
        self.check_completable()
        scope = list(self.requests)[self.checks % len(self.requests)] if self.requests else None
        for email in EMAILS:
            self.check_account(email, scope)

    def check_links(self) -> None:
        listed = self.call(
            "GET",
            f"{WORKER}/links",
            params={"status": ALL_LINK_STATUSES, "limit": 1000},
            expect=200,
        ).json()["data"]
        seen = {item["id"]: item for item in listed}
        assert set(seen) == set(self.links), "the app's links are not the model's"
        for link_id, item in seen.items():
            link = self.links[link_id]
            assert item["phase"] in {p.value for p in Phase}
            if item["status"] == "pending":
                assert item["server_id"] is None, item
            if item["status"] in ("queued", "running", "connect", "connecting"):
                assert item["server_id"] is not None, item
            done = item["completed_at"]
            got = (
                item["status"],
                item["phase"],
                item["server_id"],
                item["retry_count"],
                item["profile_url"],
                item["post_url"],
                done and datetime.fromisoformat(done),
            )
            want = (link.status, link.phase, link.server_id, link.retry_count,
                    link.profile_url, link.post_url, link.completed_at)  # fmt: skip
            assert got == want, f"link {link_id} ({link.email}): app {got}, model {want}"

    def check_attempts(self) -> None:
        """The attempts the database's triggers wrote, and a working link's current one, are the
        model's: as many for each link, numbered from 1, each with its phase, server, outcome and
        times (and, from ``check_attempts``: every stored one finished; ``link_counts`` equal to
        the links counted)."""
        found = self.run(check_attempts(self.ctx))
        got = {
            link_id: [
                (a["number"], a["phase"], a["server_id"] and str(a["server_id"]), a["outcome"],
                 a["started_at"], a["finished_at"])
                for a in attempts
            ]
            for link_id, attempts in found.items()
        }  # fmt: skip
        want = {
            link.id: [
                (number, a.phase, a.server_id, a.outcome, a.started_at, a.finished_at)
                for number, a in enumerate(link.attempts, 1)
            ]
            for link in self.links.values()
            if link.attempts
        }
        wrong = {
            link_id: {"app": got.get(link_id, []), "model": want.get(link_id, [])}
            for link_id in {*got, *want}
            if got.get(link_id) != want.get(link_id)
        }
        assert not wrong, f"attempts (number, phase, server, outcome, started, finished): {wrong}"

    def check_servers(self) -> None:
        listed = self.admin("GET", "/servers", expect=200).json()["data"]
        assert {item["id"] for item in listed} == {*self.servers, self.factory.assign_server_id}
        for item in listed:
            if item["id"] == self.factory.assign_server_id:
                assert item["active_tasks"] == 0
                continue
            server = self.servers[item["id"]]
            got = (item["status"], item["active_tasks"])
            assert got == (server.status, self.model.in_flight(server.id)), f"server {server.id}"
        self.run(assert_active_tasks_consistent(self.ctx))

    def check_counts(self, request: MRequest) -> None:
        mine = self.model.of_request(request.id)
        body = self.call("GET", f"{WORKER}/requests/{request.id}/links/count", expect=200).json()
        by_status = Counter(lk.status for lk in mine)
        assert body["counts"] == [{"status": s, "count": by_status[s]} for s in sorted(by_status)]
        assert body["total"] == len(mine)
        assert body["profile_count"] == sum(1 for lk in mine if lk.has_profile)
        assert body["post_count"] == sum(1 for lk in mine if lk.post_url)

    def check_completable(self) -> None:
        no_active = self.checks % 2 == 1  # each kind of completable every other step
        listed = self.call(
            "GET", f"{WORKER}/requests/completable", expect=200,
            params={"status": ALL_REQUEST_STATUSES, "no_active_links": no_active},
        ).json()["data"]  # fmt: skip
        expected = set()
        for request in self.requests.values():
            mine = self.model.of_request(request.id)
            if no_active:
                done = not any(lk.status in UNFINISHED for lk in mine)
            else:
                done = not any(lk.status in ACTIVE or lk.retryable for lk in mine)
            if mine and done:
                expected.add(request.id)
        assert {item["id"] for item in listed} == expected, f"no_active_links={no_active}"

    def check_account(self, email: str, request_id: str | None) -> None:
        params = {"email": email, **({"request_id": request_id} if request_id else {})}
        body = self.call("GET", f"{WORKER}/links/account-stats", params=params, expect=200).json()
        expected = self.model.account_stats(email, request_id, self.now)
        last = body["last_post_at"]
        got = {
            **{k: body[k] for k in expected},
            "last_post_at": last and datetime.fromisoformat(last),
        }
        assert got == expected, f"account-stats {email}"
