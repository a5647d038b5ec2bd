"""Model-based test of links, servers and requests, driven through the real API.

A hypothesis state machine runs random sequences of everything that moves a link — bulk create
(some placed on a server, some batches invalid), assign, claim, result (completed with or without
a profile, failed), retry, bulk retry, mark-final-failed, connect, complete, server status,
heartbeat, server deletion, request status, clock advances (with the stale listing) and
dispatcher ticks — against the in-process app (httpx over ASGI), and keeps a plain-Python model
of what PRODUCT.md says each one does. Every answer's status code is the model's (200 / 400 /
404 / 409), and after every step the app's links (status, phase, server, retries, profile),
servers (status, ``active_tasks``, also against SQL), requests (status, ``created_links``),
per-request link counts, completable requests and per-account statistics equal the model.

The settings make the model exact: the clock moves in whole minutes and the retry back-off is
``retry_base = retry_max = 60 s``, so with any jitter a failure becomes due for retry exactly
one minute after it happened; the rate limit is small (4 posts a day, 2 minutes of cooldown) so
account pacing shapes every dispatch. The clock starts at 23:00 UTC, so runs cross midnight.

``ASSIGN_MODEL_EXAMPLES`` and ``ASSIGN_MODEL_STEPS`` (default 30 and 30) run it deeper.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from assign.app import create_app
from assign.clock import FrozenClock
from assign.db.engine import Database
from assign.dispatcher.steps import tick
from assign.domain.states import LinkStatus, Phase, RequestStatus, ServerStatus
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.conftest import TEST_SECRET, _reset_postgres, make_settings
from tests.factories import ADMIN, TOOL, WORKER, Factory
from tests.invariants import assert_active_tasks_consistent

TYPES = ("entity", "social")
EMAILS = ("a@model.test", "b@model.test")
ALL_LINK_STATUSES = ",".join(s.value for s in LinkStatus)
ALL_REQUEST_STATUSES = ",".join(s.value for s in RequestStatus)
IN_FLIGHT = {"queued", "running", "connecting"}
WORKING = {"running", "connecting"}
ACTIVE = {"pending", "queued", "running", "connect", "connecting"}
UNFINISHED = {"pending", "queued", "running"}
BOUND = {"queued", "running", "connect", "connecting"}  # links that keep their server
FINAL_REQUEST = {"completed", "failed", "canceled"}
NIL = "00000000-0000-4000-8000-000000000000"  # an id nothing has

START = datetime(2025, 6, 1, 23, 0, tzinfo=UTC)
MAX_POSTS_PER_DAY = 4
COOLDOWN_MINUTES = 2
STALE_MINUTES = 15  # ASSIGN_STALE_TIMEOUT_MINUTES default
SERVER_TIMEOUT_MINUTES = 5  # ASSIGN_SERVER_TIMEOUT_MINUTES default
RETRY_SECONDS = 60  # retry_base = retry_max: back-off in [30 s, 60 s] whatever the jitter

#: (status, profile_url, post_url) of a result; an empty profile_url counts as no profile
OUTCOMES = st.tuples(
    st.sampled_from(["completed", "completed", "failed"]),
    st.sampled_from([None, "", "https://profile.test/p", "https://profile.test/p"]),
    st.sampled_from([None, "https://post.test/p"]),
)

MACHINE_SETTINGS = settings(
    max_examples=int(os.environ.get("ASSIGN_MODEL_EXAMPLES", "30")),
    stateful_step_count=int(os.environ.get("ASSIGN_MODEL_STEPS", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class MServer:
    id: str
    key: str
    max_threads: int
    priority: int
    service_types: list[str]
    status: str
    created_at: datetime
    last_health_check: datetime | None = None

    def accepts(self, service_type: str) -> bool:
        return not self.service_types or service_type in self.service_types


@dataclass
class MRequest:
    id: str
    service_type: str
    priority: int
    connect_config: bool
    created_at: datetime
    status: str = "pending"
    created_links: int = 0


@dataclass
class MLink:
    id: str
    request_id: str
    service_type: str
    email: str | None
    password: str
    priority: int
    max_retries: int
    created_at: datetime
    status: str
    server_id: str | None
    phase: str = "create"
    retry_count: int = 0
    profile_url: str | None = None
    post_url: str | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None

    @property
    def order(self) -> tuple[int, datetime, uuid.UUID]:
        """Dispatch order: request priority (high first), then oldest, then id."""
        return (-self.priority, self.created_at, uuid.UUID(self.id))

    @property
    def has_profile(self) -> bool:
        return bool(self.profile_url)

    @property
    def retryable(self) -> bool:
        return self.status == "failed" and self.retry_count < self.max_retries

    @property
    def exhausted(self) -> bool:
        return self.status == "failed" and self.retry_count >= self.max_retries


@dataclass
class TickCounts:
    servers_lost: int = 0
    released: int = 0
    lost_failed: int = 0
    stale_failed: int = 0
    retried: int = 0
    exhausted: int = 0
    assigned: int = 0
    started: int = 0
    finished: dict[str, int] = field(default_factory=dict)


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


class LinkMachine(RuleBasedStateMachine):
    """Links through the API against a model; subclasses say which database to use."""

    #: a clean, migrated database for one example: its URL
    prepare: Callable[[LinkMachine], Awaitable[str]]

    def __init__(self) -> None:
        super().__init__()
        Entropy.reset()
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, MServer] = {}
        self.requests: dict[str, MRequest] = {}
        self.links: dict[str, MLink] = {}
        self.names = itertools.count(1)
        self.checks = 0
        self.loop.run_until_complete(self._open())

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
        response = await self.http.put(
            f"{ADMIN}/settings/rate_limit",
            json={
                "settings": {
                    "max_posts_per_day": str(MAX_POSTS_PER_DAY),
                    "cooldown_minutes": str(COOLDOWN_MINUTES),
                }
            },
            headers=self.factory.admin,
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

    def call(
        self,
        method: str,
        path: str,
        *,
        expect: int,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        response = self.run(
            self.http.request(
                method,
                path,
                json=json,
                params=params,
                headers=headers if headers is not None else self.factory.worker,
            )
        )
        assert response.status_code == expect, (
            f"{method} {path} {json or ''} answered {response.status_code} {response.text}, "
            f"the model expects {expect}"
        )
        return response

    def tool_headers(self, server: MServer) -> dict[str, str]:
        return {"X-API-Key": server.key}

    def in_flight(self, server_id: str) -> int:
        return sum(
            1 for lk in self.links.values() if lk.server_id == server_id and lk.status in IN_FLIGHT
        )

    def free_slots(self, server: MServer) -> int:
        return server.max_threads - self.in_flight(server.id)

    def of_request(self, request_id: str) -> list[MLink]:
        return [lk for lk in self.links.values() if lk.request_id == request_id]

    def fail(self, link: MLink) -> None:
        """A running/connecting link fails now (result, stale timeout or lost server)."""
        link.status = "failed"
        link.failed_at = self.now

    def retry_now(self, link: MLink) -> None:
        """A retryable failed link back to the queue (its phase decides where)."""
        link.retry_count += 1
        link.started_at = None
        link.failed_at = None
        if link.phase == Phase.CONNECT:
            link.status = "connect"
        else:
            link.status = "pending"
            link.server_id = None

    def release_queued(self, server_id: str) -> int:
        released = 0
        for link in self.links.values():
            if link.server_id == server_id and link.status == "queued":
                link.status = "pending"
                link.server_id = None
                released += 1
        return released

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

    # --- setting up servers and requests -------------------------------------------------------

    def _add_server(self, threads: int, priority: int, types: list[str], status: str) -> None:
        body = {
            "name": f"tool-{next(self.names)}",
            "service": "tool",
            "max_threads": threads,
            "priority": priority,
            "service_types": types,
            "status": status,
        }
        response = self.call("POST", f"{ADMIN}/servers", json=body, expect=201,
                             headers=self.factory.admin)  # fmt: skip
        data = response.json()["data"]
        assert data["active_tasks"] == 0 and data["status"] == status
        self.servers[data["id"]] = MServer(
            data["id"], data["api_key"], threads, priority, types, status, self.now
        )

    def _add_request(self, service_type: str, priority: int, connect_config: bool) -> None:
        body: dict[str, Any] = {
            "service_type": service_type,
            "name": f"campaign-{next(self.names)}",
            "priority": priority,
        }
        if connect_config:
            body["config"] = {"connect": True}
        response = self.call("POST", f"{ADMIN}/requests", json=body, expect=201,
                             headers=self.factory.admin)  # fmt: skip
        data = response.json()["data"]
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
        self._add_server(threads, priority, types, "online")

    @initialize(**request_args, data=st.data())
    def first_request(
        self, service_type: str, priority: int, connect_config: bool, data: st.DataObject
    ) -> None:
        self._add_request(service_type, priority, connect_config)
        request = list(self.requests.values())[-1]
        self._create(request, self.draw_items(data, request, placement=False))

    @precondition(lambda self: len(self.servers) < 4 or len(self.requests) < 3)
    @rule(data=st.data())
    def grow(self, data: st.DataObject) -> None:
        """A new server (maybe not online) or a new request."""
        kinds = [k for k, room in (("server", len(self.servers) < 4),
                                   ("request", len(self.requests) < 3)) if room]  # fmt: skip
        if data.draw(st.sampled_from(kinds), label="new") == "server":
            status = st.sampled_from(["online", "online", "maintenance", "offline"])
            self._add_server(**data.draw(st.fixed_dictionaries(
                {**self.server_args, "status": status})))  # fmt: skip
        else:
            self._add_request(**data.draw(st.fixed_dictionaries(self.request_args)))

    # --- worker API: links ---------------------------------------------------------------------

    @precondition(lambda self: len(self.links) < 30)
    @rule(data=st.data())
    def create_links(self, data: st.DataObject) -> None:
        request = self.draw_request(data, unknown=False)
        assert request is not None
        items = self.draw_items(data, request, placement=True)
        count = len(items)
        bad = data.draw(st.sampled_from([None] * 8 + ["request", "server", "assign-server"]))
        if bad is not None:
            victim = data.draw(st.integers(0, count - 1))
            if bad == "request":
                items[victim]["request_id"] = NIL
            else:
                items[victim]["server_id"] = (
                    NIL if bad == "server" else self.factory.assign_server_id
                )
            self.call("POST", f"{WORKER}/links/bulk", json={"links": items}, expect=400)
            return  # all or nothing: the invariants check no link was added
        self._create(request, items)

    def draw_items(
        self, data: st.DataObject, request: MRequest, *, placement: bool
    ) -> list[dict[str, Any]]:
        """1 to 4 links for a bulk create; with ``placement`` some go straight to a server."""
        items = []
        for _ in range(data.draw(st.integers(1, 4), label="count")):
            marker = f"m{next(self.names)}"
            servers = list(self.servers) if placement else []
            items.append(
                {
                    "request_id": request.id,
                    "service_type": data.draw(st.sampled_from(TYPES)),
                    "site_name": marker,
                    "email": data.draw(st.sampled_from([*EMAILS, None, None])),
                    "password": f"pw-{marker}",
                    "max_retries": data.draw(st.integers(0, 2)),
                    "server_id": data.draw(st.sampled_from([None] * 5 + servers), label="placed"),
                }
            )
        return items

    def _create(self, request: MRequest, items: list[dict[str, Any]]) -> None:
        """A valid bulk create; the new links enter the model under the ids the app gave them."""
        count = len(items)
        response = self.call("POST", f"{WORKER}/links/bulk", json={"links": items}, expect=200)
        assert response.json() == {"success": True, "created": count}
        listed = self.call(
            "GET",
            f"{WORKER}/links",
            params={"request_id": request.id, "status": ALL_LINK_STATUSES, "limit": 1000},
            expect=200,
        ).json()["data"]
        by_marker = {item["site_name"]: item for item in listed if item["id"] not in self.links}
        assert len(by_marker) == count
        for item in items:
            row = by_marker[item["site_name"]]
            placed = item["server_id"]
            self.links[row["id"]] = MLink(
                id=row["id"],
                request_id=request.id,
                service_type=item["service_type"],
                email=item["email"],
                password=item["password"],
                priority=request.priority,
                max_retries=item["max_retries"],
                created_at=self.now,
                status="queued" if placed else "pending",
                server_id=placed,
                assigned_at=self.now if placed else None,
            )

    @precondition(lambda self: self.links)
    @rule(data=st.data())
    def assign(self, data: st.DataObject) -> None:
        link = self.draw_link(data, [lk for lk in self.links.values() if lk.status == "pending"])
        target = data.draw(
            st.sampled_from([*self.servers, self.factory.assign_server_id, NIL]), label="server"
        )
        server = self.servers.get(target)
        path = f"{WORKER}/links/{link.id if link else NIL}/assign"
        body = {"server_id": target}
        if link is None or (server is None and target != self.factory.assign_server_id):
            self.call("PUT", path, json=body, expect=404)
            return
        if (
            server is None  # the assign server takes no links
            or link.status != "pending"
            or server.status != "online"
            or not server.accepts(link.service_type)
            or self.free_slots(server) <= 0
        ):
            self.call("PUT", path, json=body, expect=409)
            return
        answer = self.call("PUT", path, json=body, expect=200).json()["data"]
        assert answer["status"] == "queued" and answer["server_id"] == server.id
        link.status = "queued"
        link.server_id = server.id
        link.assigned_at = self.now

    @rule(data=st.data())
    def retries(self, data: st.DataObject) -> None:
        """Retry one link or several, or cancel the exhausted ones."""
        ops = ["mark_final_failed", *(["retry", "bulk_retry"] if self.links else [])]
        getattr(self, data.draw(st.sampled_from(ops), label="op"))(data)

    def retry(self, data: st.DataObject) -> None:
        link = self.draw_link(data, [lk for lk in self.links.values() if lk.status == "failed"])
        path = f"{WORKER}/links/{link.id if link else NIL}/retry"
        if link is None:
            self.call("PUT", path, expect=404)
        elif not link.retryable:
            self.call("PUT", path, expect=409)
        else:
            answer = self.call("PUT", path, expect=200).json()["data"]
            self.retry_now(link)
            assert answer["status"] == link.status
            assert answer["retry_count"] == link.retry_count

    def bulk_retry(self, data: st.DataObject) -> None:
        ids = data.draw(
            st.lists(st.sampled_from([*self.links, NIL]), min_size=1, max_size=5), label="ids"
        )
        retryable = [self.links[i] for i in set(ids) if i in self.links and self.links[i].retryable]
        response = self.call(
            "PUT", f"{WORKER}/links/bulk-retry", json={"link_ids": ids}, expect=200
        )
        assert response.json() == {"success": True, "updated": len(retryable)}
        for link in retryable:
            self.retry_now(link)

    def mark_final_failed(self, data: st.DataObject) -> None:
        scope = data.draw(st.sampled_from([*self.requests, None, NIL, "no body"]), label="scope")
        if scope == "no body":
            body: Any = None
            scope = None
        else:
            body = {"request_id": scope} if scope else {}
        exhausted = [
            lk for lk in self.links.values() if lk.exhausted and scope in (None, lk.request_id)
        ]
        response = self.call("PUT", f"{WORKER}/links/mark-final-failed", json=body, expect=200)
        assert response.json() == {"success": True, "updated": len(exhausted)}
        for link in exhausted:
            link.status = "canceled"

    # --- worker API: requests and servers ------------------------------------------------------

    @rule(data=st.data())
    def request_change(self, data: st.DataObject) -> None:
        """A request connects, completes, or gets an operator's status."""
        ops = ["connect", "complete", "set_request_status"]
        getattr(self, data.draw(st.sampled_from(ops), label="op"))(data)

    def connect(self, data: st.DataObject) -> None:
        profiled = {
            lk.request_id
            for lk in self.links.values()
            if lk.status == "completed" and lk.phase == "create" and lk.has_profile
        }
        request = self.draw_request(data, preferred=[self.requests[r] for r in sorted(profiled)])
        path = f"{WORKER}/requests/{request.id if request else NIL}/connect"
        if request is None:
            self.call("PUT", path, expect=404)
            return
        answer = self.call("PUT", path, expect=200).json()
        connected, canceled = self.connect_links(request)
        assert (answer["links_connect"], answer["links_canceled"]) == (connected, canceled)
        request.status = "connecting"

    def connect_links(self, request: MRequest) -> tuple[int, int]:
        """The connect step: links without a profile canceled, profiled completions -> connect."""
        canceled = connected = 0
        for link in self.of_request(request.id):
            orphaned = link.status == "completed" and link.phase == "create" and not link.server_id
            if (not link.has_profile or orphaned) and link.status != "canceled":
                link.status = "canceled"
                canceled += 1
        for link in self.of_request(request.id):
            if link.status == "completed" and link.phase == "create" and link.has_profile:
                link.status = "connect"
                link.phase = "connect"
                link.started_at = link.completed_at = None
                connected += 1
        return connected, canceled

    def complete(self, data: st.DataObject) -> None:
        request = self.draw_request(data)
        path = f"{WORKER}/requests/{request.id if request else NIL}/complete"
        if request is None:
            self.call("PUT", path, expect=404)
            return
        response = self.call("PUT", path, expect=200)
        assert response.json() == {"success": True, "updated": True}
        for link in self.of_request(request.id):
            if link.status in ("pending", "queued", "connect"):
                link.status = "canceled"
        request.status = "completed"

    def set_request_status(self, data: st.DataObject) -> None:
        status = data.draw(st.sampled_from([s.value for s in RequestStatus]), label="status")
        request = self.draw_request(data)
        path = f"{WORKER}/requests/{request.id if request else NIL}/status"
        if request is None:
            self.call("PUT", path, json={"status": status}, expect=404)
            return
        answer = self.call("PUT", path, json={"status": status}, expect=200).json()["data"]
        assert answer["status"] == status
        request.status = status

    @rule(data=st.data())
    def server_change(self, data: st.DataObject) -> None:
        """A server heartbeats, gets a status, or is deleted."""
        ops = ["set_server_status", "delete_server", *(["heartbeat"] if self.servers else [])]
        getattr(self, data.draw(st.sampled_from(ops), label="op"))(data)

    def set_server_status(self, data: st.DataObject) -> None:
        status = data.draw(st.sampled_from([s.value for s in ServerStatus]), label="status")
        server = self.draw_server(data)
        path = f"{WORKER}/servers/{server.id if server else NIL}/status"
        if server is None:
            self.call("PUT", path, json={"status": status}, expect=404)
            return
        answer = self.call("PUT", path, json={"status": status}, expect=200).json()["data"]
        server.status = status
        if status != "online":
            self.release_queued(server.id)
        assert answer["status"] == status
        assert answer["active_tasks"] == self.in_flight(server.id)

    def delete_server(self, data: st.DataObject) -> None:
        """A server with work bound to it stays; otherwise it goes, and its links keep no server
        (its failed connect-phase links, which could only return to it, are canceled)."""
        idle = [
            s
            for s in self.servers.values()
            if not any(lk.server_id == s.id and lk.status in BOUND for lk in self.links.values())
        ]
        # best of all, an idle server that links may still come back to (a completed profile
        # before its request connects, a failed connect-phase link before its retry)
        returning = [
            s
            for s in idle
            if any(lk.server_id == s.id and lk.has_profile and lk.status in ("completed", "failed")
                   for lk in self.links.values())
        ]  # fmt: skip
        if idle and data.draw(st.sampled_from([True, True, False]), label="an idle server"):
            server: MServer | None = data.draw(st.sampled_from(returning or idle))
        else:
            server = self.draw_server(data)
        path = f"{ADMIN}/servers/{server.id if server else NIL}"
        if server is None:
            self.call("DELETE", path, expect=404, headers=self.factory.admin)
            return
        mine = [lk for lk in self.links.values() if lk.server_id == server.id]
        if any(lk.status in BOUND for lk in mine):
            self.call("DELETE", path, expect=409, headers=self.factory.admin)
            return
        self.call("DELETE", path, expect=200, headers=self.factory.admin)
        del self.servers[server.id]
        for link in mine:
            if link.status == "failed" and link.phase == "connect":
                link.status = "canceled"
            link.server_id = None

    # --- tool API ------------------------------------------------------------------------------

    def heartbeat(self, data: st.DataObject) -> None:
        server = self.draw_server(data, unknown=False)
        assert server is not None
        self.beat(server, data.draw(st.one_of(st.none(), st.integers(0, 3)), label="threads"))

    def beat(self, server: MServer, active_threads: int | None = None) -> None:
        body = None if active_threads is None else {"active_threads": active_threads}
        answer = self.call(
            "POST", f"{TOOL}/heartbeat", json=body, expect=200, headers=self.tool_headers(server)
        ).json()["data"]
        server.last_health_check = self.now
        if server.status == "offline":
            server.status = "online"
        assert answer["status"] == server.status

    @precondition(lambda self: self.servers)
    @rule(data=st.data(), limit=st.integers(1, 4))
    def claim(self, data: st.DataObject, limit: int) -> None:
        busy = [
            s
            for s in self.servers.values()
            if any(lk.server_id == s.id and lk.status in ("queued", "connect")
                   for lk in self.links.values())
        ]  # fmt: skip
        server = data.draw(st.sampled_from(busy or list(self.servers.values())), label="server")
        self._claim(server, limit)

    def _claim(self, server: MServer, limit: int) -> list[MLink]:
        """The server claims: its queued links (dispatch order), then connect links while it has
        free slots; the links it got."""
        free = self.free_slots(server)
        mine = sorted(
            (lk for lk in self.links.values() if lk.server_id == server.id), key=lambda x: x.order
        )
        queued = [lk for lk in mine if lk.status == "queued"][:limit]
        more = min(limit - len(queued), free)
        connect = [lk for lk in mine if lk.status == "connect"][: max(more, 0)]
        if server.status == "online":
            server.last_health_check = self.now  # a claim is a heartbeat (PRODUCT.md §12)
        else:
            queued = connect = []  # nothing for a server in maintenance or offline (§9)
        answer = self.call(
            "POST",
            f"{TOOL}/links/claim",
            json={"limit": limit},
            expect=200,
            headers=self.tool_headers(server),
        ).json()
        got = [item["id"] for item in answer["data"]]
        assert answer["total"] == len(got)
        assert sorted(got) == sorted(lk.id for lk in queued + connect), (got, queued, connect)
        for item in answer["data"]:
            link = self.links[item["id"]]
            assert item["password"] == link.password
            link.status = "running" if link.status == "queued" else "connecting"
            link.started_at = self.now
            assert item["status"] == link.status
        return [self.links[i] for i in got]

    @precondition(lambda self: self.servers)
    @rule(data=st.data())
    def work_round(self, data: st.DataObject) -> None:
        """A tool server at work: it claims, then reports a result for each link it got."""
        busy = [
            s
            for s in self.servers.values()
            if self.in_flight(s.id)
            or any(lk.server_id == s.id and lk.status == "connect" for lk in self.links.values())
        ]
        server = data.draw(st.sampled_from(busy or list(self.servers.values())), label="server")
        self.work(server, data)

    def work(self, server: MServer, data: st.DataObject) -> None:
        """Claim, then report on each working link of the server — or, now and then, stay silent
        about one (it goes stale in time)."""
        self._claim(server, data.draw(st.integers(1, 4), label="limit"))
        for link in [
            lk for lk in self.links.values() if lk.server_id == server.id and lk.status in WORKING
        ]:
            if data.draw(st.sampled_from([True] * 5 + [False]), label="reports"):
                self._report(link, server, *data.draw(OUTCOMES, label="outcome"))

    @precondition(lambda self: self.links and self.servers)
    @rule(data=st.data(), outcome=OUTCOMES)
    def result(self, data: st.DataObject, outcome: tuple[str, str | None, str | None]) -> None:
        link = self.draw_link(data, [lk for lk in self.links.values() if lk.status in WORKING])
        own = (
            link is not None
            and link.server_id in self.servers
            and data.draw(st.sampled_from([True, True, True, False]), label="own server")
        )
        server = (
            self.servers[link.server_id]  # type: ignore[union-attr,index]
            if own
            else self.draw_server(data, unknown=False)
        )
        assert server is not None
        self._report(link, server, *outcome)

    def _report(
        self,
        link: MLink | None,
        server: MServer,
        status: str,
        profile_url: str | None,
        post_url: str | None,
    ) -> None:
        """PUT /links/:id/result by ``server``: 404 unless the link is on it, 409 unless working."""
        body: dict[str, Any] = {"status": status}
        if profile_url is not None:
            body["profile_url"] = profile_url
        if post_url is not None:
            body["post_url"] = post_url
        path = f"{TOOL}/links/{link.id if link else NIL}/result"
        headers = self.tool_headers(server)
        if link is None or link.server_id != server.id:
            self.call("PUT", path, json=body, expect=404, headers=headers)
            return
        if link.status not in WORKING:
            self.call("PUT", path, json=body, expect=409, headers=headers)
            return
        answer = self.call("PUT", path, json=body, expect=200, headers=headers).json()["data"]
        # a failed attempt's URLs are not kept on the link (PRODUCT.md §9)
        if profile_url is not None and status == "completed":
            link.profile_url = profile_url
        if post_url is not None and status == "completed":
            link.post_url = post_url
        if status == "completed":
            link.status = "completed"
            link.completed_at = self.now
            if link.phase == "create":
                self.requests[link.request_id].created_links += 1
        else:
            self.fail(link)
        assert answer["status"] == link.status

    # --- time and the dispatcher ---------------------------------------------------------------

    @rule(
        data=st.data(),
        minutes=st.sampled_from([1, 1, 2, 4, 6, 16]),
        fleet_beats=st.sampled_from([True, True, False]),
        then_tick=st.sampled_from([True, True, False]),
    )
    def advance(
        self, data: st.DataObject, minutes: int, fleet_beats: bool, then_tick: bool
    ) -> None:
        """Time passes; the stale listing shows exactly the links working for too long. Mostly
        the servers keep sending heartbeats meanwhile, the dispatcher runs, and some servers
        do a round of work."""
        self.clock.advance(minutes=minutes)
        timeout = data.draw(st.sampled_from([None, 3]), label="timeout_minutes")
        params: dict[str, Any] = {"stale": "true", "limit": 1000}
        if timeout is not None:
            params["timeout_minutes"] = timeout
        cutoff = self.now - timedelta(minutes=timeout or 15)  # the listing's default is 15
        listed = self.call("GET", f"{WORKER}/links", params=params, expect=200).json()
        expected = {
            lk.id
            for lk in self.links.values()
            if lk.status in WORKING and lk.started_at is not None and lk.started_at < cutoff
        }
        assert {item["id"] for item in listed["data"]} == expected
        if fleet_beats:
            for server in self.servers.values():
                self.beat(server)
        if then_tick:
            self.dispatcher_tick()
        for server in list(self.servers.values()):
            if data.draw(st.booleans(), label=f"{server.id} works"):
                self.work(server, data)

    @rule()
    def dispatcher_tick(self) -> None:
        expected = self.model_tick()
        report = self.run(tick(self.ctx))
        got = TickCounts(
            servers_lost=report.servers_lost,
            released=report.released,
            lost_failed=report.lost_failed,
            stale_failed=report.stale_failed,
            retried=report.retried,
            exhausted=report.exhausted,
            assigned=report.assigned,
            started=report.started,
            finished={str(k): v for k, v in report.finished.items()},
        )
        assert got == expected

    def model_tick(self) -> TickCounts:
        """The six steps of PRODUCT.md §6 on the model."""
        now = self.now
        counts = TickCounts()
        # 1. silent online servers -> offline; queued links released, working ones failed
        silent_since = now - timedelta(minutes=SERVER_TIMEOUT_MINUTES)
        for server in self.servers.values():
            last_seen = server.last_health_check or server.created_at
            if server.status == "online" and last_seen < silent_since:
                server.status = "offline"
                counts.servers_lost += 1
                counts.released += self.release_queued(server.id)
                for link in self.links.values():
                    if link.server_id == server.id and link.status in WORKING:
                        self.fail(link)
                        counts.lost_failed += 1
        # 2. stale working links -> failed
        stale_before = now - timedelta(minutes=STALE_MINUTES)
        for link in self.links.values():
            if link.status in WORKING and link.started_at and link.started_at < stale_before:
                self.fail(link)
                counts.stale_failed += 1
        # 3. retryable failures whose back-off ran out, of open requests -> back to the queue
        for link in self.links.values():
            if (
                link.retryable
                and link.failed_at is not None
                and now - link.failed_at >= timedelta(seconds=RETRY_SECONDS)
                and self.requests[link.request_id].status not in FINAL_REQUEST
            ):
                self.retry_now(link)
                counts.retried += 1
        # 4. exhausted failures -> canceled
        for link in self.links.values():
            if link.exhausted:
                link.status = "canceled"
                counts.exhausted += 1
        # 5. pending links -> free slots, within each account's allowance
        counts.assigned = self.model_assign(now)
        # 6. requests start when a link was dispatched; finish when none is active
        for request in self.requests.values():
            mine = self.of_request(request.id)
            if request.status == "pending" and any(
                lk.status in IN_FLIGHT | {"completed"} for lk in mine
            ):
                request.status = "running"
                counts.started += 1
        finished = [
            r
            for r in self.requests.values()
            if r.status in ("running", "connecting")
            and self.of_request(r.id)
            and not any(lk.status in ACTIVE or lk.retryable for lk in self.of_request(r.id))
        ]
        for request in finished:
            any_completed = any(lk.status == "completed" for lk in self.of_request(request.id))
            if request.status == "running" and request.connect_config:
                connected, _ = self.connect_links(request)
                status = "connecting" if connected else "failed"
            else:
                status = "completed" if any_completed else "failed"
            request.status = status
            counts.finished[status] = counts.finished.get(status, 0) + 1
        return counts

    def model_assign(self, now: datetime) -> int:
        day_start = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
        free = {
            s.id: self.free_slots(s)
            for s in sorted(self.servers.values(), key=lambda s: (-s.priority, uuid.UUID(s.id)))
            if s.status == "online" and self.free_slots(s) > 0
        }
        rank = {server_id: i for i, server_id in enumerate(free)}
        pending = sorted(
            (lk for lk in self.links.values() if lk.status == "pending"), key=lambda x: x.order
        )
        budget: dict[str, int] = {}
        for email in {lk.email for lk in pending if lk.email is not None}:
            mine = [lk for lk in self.links.values() if lk.email == email]
            used = sum(
                1
                for lk in mine
                if lk.status in IN_FLIGHT
                or (lk.status == "completed" and lk.completed_at and lk.completed_at >= day_start)
            )
            room = MAX_POSTS_PER_DAY - used
            recent = [
                lk.assigned_at
                for lk in mine
                if lk.assigned_at is not None
                and now - lk.assigned_at < timedelta(minutes=COOLDOWN_MINUTES)
            ]
            budget[email] = 0 if room <= 0 or recent else 1
        placed = 0
        for link in pending:
            if link.email is not None and budget[link.email] <= 0:
                continue
            takers = [
                sid
                for sid, n in free.items()
                if n > 0 and self.servers[sid].accepts(link.service_type)
            ]
            if not takers:
                continue
            # highest priority, then most free slots, then the server order
            best = min(takers, key=lambda sid: (-self.servers[sid].priority, -free[sid], rank[sid]))
            free[best] -= 1
            link.status = "queued"
            link.server_id = best
            link.assigned_at = now
            placed += 1
            if link.email is not None:
                budget[link.email] -= 1
        return placed

    # --- what must hold after every step -------------------------------------------------------

    @invariant()
    def app_equals_model(self) -> None:
        self.checks += 1
        legal = {s.value for s in LinkStatus}
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
            assert item["status"] in legal and item["phase"] in {p.value for p in Phase}
            if item["status"] == "pending":
                assert item["server_id"] is None, item
            if item["status"] in ("queued", "running", "connect", "connecting"):
                assert item["server_id"] is not None, item
            got = (item["status"], item["phase"], item["server_id"], item["retry_count"],
                   item["profile_url"], item["post_url"])  # fmt: skip
            want = (link.status, link.phase, link.server_id, link.retry_count,
                    link.profile_url, link.post_url)  # fmt: skip
            assert got == want, f"link {link_id} ({link.email}): app {got}, model {want}"

        servers = self.call("GET", f"{ADMIN}/servers", expect=200, headers=self.factory.admin)
        listed_servers = {item["id"] for item in servers.json()["data"]}
        assert listed_servers == {*self.servers, self.factory.assign_server_id}
        for item in servers.json()["data"]:
            if item["id"] == self.factory.assign_server_id:
                assert item["active_tasks"] == 0
                continue
            server = self.servers[item["id"]]
            assert (item["status"], item["active_tasks"]) == (
                server.status,
                self.in_flight(server.id),
            ), f"server {server.id}"
        self.run(assert_active_tasks_consistent(self.ctx))

        requests = self.call(
            "GET",
            f"{ADMIN}/requests",
            params={"status": ALL_REQUEST_STATUSES, "limit": 1000},
            expect=200,
            headers=self.factory.admin,
        ).json()["data"]
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

    def check_counts(self, request: MRequest) -> None:
        mine = self.of_request(request.id)
        body = self.call("GET", f"{WORKER}/requests/{request.id}/links/count", expect=200).json()
        by_status = Counter(lk.status for lk in mine)
        assert body["counts"] == [{"status": s, "count": by_status[s]} for s in sorted(by_status)]
        assert body["total"] == len(mine)
        assert body["profile_count"] == sum(1 for lk in mine if lk.has_profile)
        assert body["post_count"] == sum(1 for lk in mine if lk.post_url)

    def check_completable(self) -> None:
        no_active = self.checks % 2 == 1  # each kind of completable every other step
        listed = self.call(
            "GET",
            f"{WORKER}/requests/completable",
            params={"status": ALL_REQUEST_STATUSES, "no_active_links": no_active},
            expect=200,
        ).json()["data"]
        expected = set()
        for request in self.requests.values():
            mine = self.of_request(request.id)
            if no_active:
                done = not any(lk.status in UNFINISHED for lk in mine)
            else:
                done = not any(lk.status in ACTIVE or lk.retryable for lk in mine)
            if mine and done:
                expected.add(request.id)
        assert {item["id"] for item in listed} == expected, f"no_active_links={no_active}"

    def check_account(self, email: str, request_id: str | None) -> None:
        params = {"email": email}
        if request_id is not None:
            params["request_id"] = request_id
        body = self.call("GET", f"{WORKER}/links/account-stats", params=params, expect=200).json()
        day_start = datetime.combine(self.now.date(), datetime.min.time(), tzinfo=UTC)
        mine = [lk for lk in self.links.values() if lk.email == email]
        done = [lk for lk in mine if lk.status == "completed"]
        in_request = [lk for lk in mine if lk.request_id == request_id]
        last = max((lk.completed_at for lk in done if lk.completed_at), default=None)
        expected = {
            "pending_count": sum(1 for lk in mine if lk.status in UNFINISHED),
            "today_count": sum(
                1 for lk in done if lk.completed_at and lk.completed_at >= day_start
            ),
            "total_completed": len(done),
            "request_pending": sum(1 for lk in in_request if lk.status in UNFINISHED),
            "request_completed": sum(1 for lk in in_request if lk.status == "completed"),
        }
        got = {k: body[k] for k in expected}
        assert got == expected, f"account-stats {email}"
        got_last = body["last_post_at"]
        assert (datetime.fromisoformat(got_last) if got_last else None) == last


# --- the tests: one machine per database ---------------------------------------------------------


async def _status_of(factory: Factory, request: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = await factory.list_links(request_id=request["id"], status=ALL_LINK_STATUSES)
    return [(row["status"], row["server_id"]) for row in rows]


async def test_a_deleted_server_leaves_no_link_nobody_can_claim(factory: Factory) -> None:
    """Found by the model: links that could only go back to a deleted server became ``connect``
    links with no server — never claimed, keeping their request open for ever."""
    server, other = await factory.server(), await factory.server()
    first, second = await factory.request(), await factory.request()
    [profiled] = await factory.links(first, 1)
    await factory.run_link(profiled, server, status="completed", profile_url="https://p.test/1")
    [connecting] = await factory.links(second, 1)
    await factory.run_link(connecting, other, status="completed", profile_url="https://p.test/2")
    response = await factory.client.put(
        f"{WORKER}/requests/{second['id']}/connect", headers=factory.worker
    )
    assert response.json()["links_connect"] == 1
    assert [c["id"] for c in await factory.claim(other)] == [connecting["id"]]
    response = await factory.result(connecting["id"], other, status="failed")
    assert response.status_code == 200

    for gone in (server, other):
        response = await factory.client.delete(
            f"{ADMIN}/servers/{gone['id']}", headers=factory.admin
        )
        assert response.status_code == 200, response.text

    # the failed connect-phase link could only be retried back to its deleted server
    assert await _status_of(factory, second) == [("canceled", None)]
    # a completed profile whose server is gone cannot go through the connect step
    response = await factory.client.put(
        f"{WORKER}/requests/{first['id']}/connect", headers=factory.worker
    )
    assert (response.json()["links_connect"], response.json()["links_canceled"]) == (0, 1)
    assert await _status_of(factory, first) == [("canceled", None)]
    response = await factory.client.get(
        f"{WORKER}/requests/completable", params={"status": "connecting"}, headers=factory.worker
    )
    assert {r["id"] for r in response.json()["data"]} == {first["id"], second["id"]}


@pytest.mark.timeout(1200)  # a failure is shrunk, which takes a while
def test_links_model_sqlite(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "urandom", Entropy.urandom)
    copies = itertools.count()

    async def prepare(machine: LinkMachine) -> str:
        path = tmp_path / f"example-{next(copies)}.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"

    machine = type("SQLiteLinkMachine", (LinkMachine,), {"prepare": prepare})
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)


@pytest.mark.postgres
@pytest.mark.timeout(1200)
def test_links_model_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "urandom", Entropy.urandom)

    async def prepare(machine: LinkMachine) -> str:
        await _reset_postgres(pg_url)
        return pg_url

    machine = type("PostgresLinkMachine", (LinkMachine,), {"prepare": prepare})
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
