"""Schemathesis against the app's own OpenAPI document, in-process over ASGI, on both databases.

Every operation is exercised with valid and invalid data (examples, coverage and fuzzing phases)
under every built-in check: no server error, status codes, content types, headers and bodies as
documented, invalid data rejected, valid data accepted, undeclared methods answered 405 with an
``Allow`` header, and authentication enforced (each call is replayed without a key and with a
wrong one). A stateful phase then chains operations through the links schemathesis infers from
the schema (create a server, then patch, read and delete it; list links, then assign or retry
them...), each scenario starting from the same seeded database.

Each surface gets its own kind of key: the worker API an assign-server key, the tool API a tool
server key, the admin API an admin key. The database is seeded first with servers, requests,
links in every state, sites, accounts and settings, so operations reach real code paths.

Schemathesis is told not to generate NUL characters: the API refuses them everywhere (400, as
PostgreSQL cannot store them), which a test at the end checks for each kind of input; another
checks the limits of free-form JSON fields (64-bit numbers, 32 levels), which the document
states in prose and in its JsonValue schema.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from assign.app import create_app
from assign.clock import Clock
from assign.db.engine import Database
from assign.db.tables import metadata
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.conftest import TEST_SECRET, examples, make_settings, steps
from tests.factories import ADMIN, TOOL, WORKER, Factory

#: examples per operation and generation mode in the fuzzing phase; the coverage phase adds its
#: own boundary and type cases (most of the run), the examples phase the schema's defaults.
#: The hypothesis profile sizes the run (10 normally, 100 under ASSIGN_TEST_DEEP=1);
#: ASSIGN_FUZZ_EXAMPLES and ASSIGN_FUZZ_SEED run it longer or differently (the seed is fixed, so
#: that a run is reproducible)
MAX_EXAMPLES = int(os.environ.get("ASSIGN_FUZZ_EXAMPLES") or examples(0.1))
SEED = int(os.environ.get("ASSIGN_FUZZ_SEED", "20251201"))
#: stateful scenarios, and the most steps in each: fewer, longer chains of calls (10 x 25
#: normally, about as many calls as 25 x 10 but reaching deeper states), 100 x 100 when deep
STATEFUL_EXAMPLES = MAX_EXAMPLES
STATEFUL_STEPS = steps(0.5)

Snapshot = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Keys:
    admin: str
    worker: str
    tool: str

    def for_path(self, path: str) -> str | None:
        """The key of the surface ``path`` belongs to (None for health and metrics)."""
        for prefix, key in ((WORKER, self.worker), (TOOL, self.tool), (ADMIN, self.admin)):
            if path == prefix or path.startswith(prefix + "/"):
                return key
        return None


async def _seed(url: str) -> Keys:
    """Servers, requests with links in every state, sites, accounts and settings."""
    settings = make_settings(url)
    ctx = Context(
        db=Database(url, pool_size=2), settings=settings, cipher=Cipher(TEST_SECRET), clock=Clock()
    )
    try:
        app = create_app(context=ctx, migrate=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
            factory = await Factory.create(ctx, http)
            tool = await factory.server(max_threads=50, priority=5)
            await factory.server(status="maintenance", service_types=["social"])
            await factory.server(status="offline")

            # request 1: links pending, queued, running, completed, failed (retryable), exhausted
            first = await factory.request(priority=3, data={"note": "seeded"})
            links = await factory.links(first, 8, max_retries=1)
            await factory.run_link(links[0], tool, profile_url="https://p.example/0")
            await factory.run_link(links[1], tool, status="failed", error="captcha")
            await factory.run_link(links[2], tool, status="failed", error="timeout")
            retried = await http.put(
                f"{WORKER}/links/{links[2]['id']}/retry", headers=factory.worker
            )
            assert retried.status_code == 200, retried.text
            await factory.run_link(links[2], tool, status="failed", error="timeout again")
            assert (await factory.assign(links[3]["id"], tool)).status_code == 200
            assert len(await factory.claim(tool, limit=1)) == 1
            assert (await factory.assign(links[4]["id"], tool)).status_code == 200

            # request 2: in its connect phase, one link waiting in connect on the tool server
            second = await factory.request(service_type="social", config={"connect": True})
            profiled = await factory.links(second, 2, email="poster@example.com")
            await factory.run_link(profiled[0], tool, profile_url="https://p.example/social")
            connected = await http.put(
                f"{WORKER}/requests/{second['id']}/connect", headers=factory.worker
            )
            assert connected.status_code == 200, connected.text
            await factory.request(service_type="podcast", status="completed")

            for body in (
                {"name": "site-a.example", "type": "entity", "config": {"captcha": True}},
                {"name": "site-b.example", "type": "social", "active": False},
            ):
                response = await http.post(f"{ADMIN}/sites", json=body, headers=factory.admin)
                assert response.status_code == 201, response.text
            group = "6f1c1d52-5a55-4d0a-9a55-7a0c2b4f1a10"
            for i, status in enumerate(("active", "banned")):
                body = {"group_id": group, "email": f"user{i}@example.com", "status": status}
                response = await http.post(f"{ADMIN}/accounts", json=body, headers=factory.admin)
                assert response.status_code == 201, response.text
            response = await http.put(
                f"{ADMIN}/settings/notify", json={"settings": {"x": "1"}}, headers=factory.admin
            )
            assert response.status_code == 200, response.text
            return Keys(admin=factory.admin_key, worker=factory.assign_key, tool=tool["api_key"])
    finally:
        await ctx.db.dispose()


async def _snapshot(url: str) -> Snapshot:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return {
                table.name: [dict(row._mapping) for row in await conn.execute(sa.select(table))]
                for table in metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def _restore(url: str, snapshot: Snapshot) -> None:
    """Every table back to ``snapshot``, in one transaction."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
            for table in metadata.sorted_tables:
                if snapshot[table.name]:
                    await conn.execute(table.insert(), snapshot[table.name])
    finally:
        await engine.dispose()


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                "allow-x00": False,
            },
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
            "operations": [
                {
                    # a link naming a request that does not exist is invalid input (PRODUCT.md §5:
                    # a 400 naming the link), and random UUIDs name none
                    "include-name": "POST /api/v1/worker/links/bulk",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "404", "409", "429"]
                        }
                    },
                },
                {
                    # the same link id twice in one batch is invalid input (PRODUCT.md §12: a 400
                    # naming results[i].id), which no JSON Schema can say of objects in an array
                    "include-name": "PUT /api/v1/tool/links/results",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "404", "409", "429"]
                        }
                    },
                },
            ],
        }
    )


@dataclass
class Target:
    """The app's schema, bound to the app over ASGI, and a way back to the seeded database."""

    schema: Any
    restore: Callable[[], None]


@pytest.fixture
def fuzz_target(clean_database: str) -> Target:
    keys = asyncio.run(_seed(clean_database))
    snapshot = asyncio.run(_snapshot(clean_database))
    # no context: the app builds its own in its lifespan, on the loop schemathesis runs it on
    # (the lifespan ends after the test, by the schemathesis pytest plugin)
    app = create_app(make_settings(clean_database), migrate=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config())

    @schema.auth(refresh_interval=None)
    class SurfaceKey:
        """The key of the surface each operation belongs to."""

        def get(self, case: Any, ctx: Any) -> str | None:
            return keys.for_path(case.operation.path)

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = {**(case.headers or {}), "X-API-Key": data}

    return Target(schema, lambda: asyncio.run(_restore(clean_database, snapshot)))


@pytest.fixture
def fuzz_schema(fuzz_target: Target) -> Any:
    return fuzz_target.schema


lazy_schema = schemathesis.pytest.from_fixture("fuzz_schema")


def _short_wait(case: Any) -> None:
    """A claim's ``wait_seconds`` within 0..30 waits that long when nothing is ready: the
    waiting itself is tested in test_tool_wait.py, here half a second will do (a value outside
    the range is left as drawn, to be refused)."""
    body = case.body
    if isinstance(body, dict):
        wait = body.get("wait_seconds")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0.5 < wait <= 30:
            case.body = {**body, "wait_seconds": 0.5}


@pytest.mark.slow
@lazy_schema.parametrize()
def test_fuzz_operations(case: Any) -> None:
    _short_wait(case)
    case.call_and_validate()


def _follows_null_id(case: Any) -> bool:
    return any(value is None for value in (case.path_parameters or {}).values())


@pytest.mark.slow
def test_fuzz_stateful(fuzz_target: Target) -> None:
    base = fuzz_target.schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            _short_wait(case)

        def setup(self) -> None:
            # the same starting point for every scenario, so that replaying one replays it exactly
            fuzz_target.restore()

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            if _follows_null_id(case):
                # a link followed through a null id (an unassigned link's server_id, a link's
                # site_id...) puts "None" in the path: a malformed id the API rightly refuses
                # with a 400, which is no valid data rejected
                case.validate_response(
                    response,
                    additional_checks=additional_checks,
                    excluded_checks=[positive_data_acceptance],
                    transport_kwargs=kwargs or None,
                    recorder=self.recorder,
                )
                return
            super().validate_response(response, case, additional_checks, **kwargs)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )


NUL_CASES = [
    # (method, path, surface, body, bad field)
    ("GET", f"{WORKER}/requests?type_request=a%00b", "worker", None, "type_request"),
    ("GET", f"{WORKER}/links/account-stats?email=a%00@example.com", "worker", None, "email"),
    ("GET", f"{WORKER}/settings?group=rate%00limit", "worker", None, "group"),
    ("PUT", f"{ADMIN}/settings/rate%00limit", "admin", {"settings": {"a": "1"}}, "group"),
    ("PUT", f"{ADMIN}/settings/notify", "admin", {"settings": {"a\x00": "1"}}, "settings"),
    ("PUT", f"{ADMIN}/settings/notify", "admin", {"settings": {"a": "1\x00"}}, "settings"),
    ("POST", f"{ADMIN}/servers", "admin", {"name": "a\x00", "service": "tool"}, "name"),
    ("POST", f"{ADMIN}/requests", "admin",
     {"service_type": "entity", "name": "n", "config": {"k": ["x", {"y": "\x00"}]}}, "config"),
    ("POST", f"{ADMIN}/accounts", "admin",
     {"group_id": "6f1c1d52-5a55-4d0a-9a55-7a0c2b4f1a10", "email": "e\x00"}, "email"),
    ("POST", f"{TOOL}/heartbeat", "tool", {"active_threads": 1, "extra\x00": 1}, None),
]  # fmt: skip
BEYOND_64_BITS = "must not hold numbers beyond the signed 64-bit range"
TOO_DEEP = "must not nest arrays and objects over 32 levels deep"


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


UNANSWERABLE_CASES = [
    # free-form JSON must be answered back as JSON: 64-bit numbers, at most 32 levels
    ({"config": {"n": 2**64}}, "config", BEYOND_64_BITS),
    ({"data": {"n": [-(2**63) - 1]}}, "data", BEYOND_64_BITS),
    ({"data": {"n": 1e300}}, "data", BEYOND_64_BITS),
    ({"folder_urls": _nested(33)}, "folder_urls", TOO_DEEP),
    ({"folder_urls": _nested(32), "config": {"n": [2**63 - 1, -(2**63), 1.5]}}, None, None),
]


async def test_nul_characters_are_refused(factory: Factory) -> None:
    """A NUL anywhere (query, path, body string, nested JSON, key) is a 400 naming the field."""
    tool = await factory.server()
    headers = {"worker": factory.worker, "admin": factory.admin, "tool": factory.tool(tool)}
    request = await factory.request()
    cases = [
        *NUL_CASES,
        ("POST", f"{WORKER}/links/bulk", "worker",
         {"links": [{"request_id": request["id"], "service_type": "entity"},
                    {"request_id": request["id"], "service_type": "entity", "about": "\x00"}]},
         "links[1].about"),
        ("PUT", f"{TOOL}/links/{factory.assign_server_id}/result", "tool",
         {"status": "failed", "details": {"\x00": 1}}, "details"),
    ]  # fmt: skip
    for method, url, surface, body, field in cases:
        response = await factory.client.request(method, url, json=body, headers=headers[surface])
        if field is None:  # an unknown field is ignored, whatever it holds
            assert response.status_code == 200, (url, response.text)
            continue
        assert response.status_code == 400, (url, body, response.text)
        error = response.json()
        assert error["success"] is False
        assert error["details"] == [
            {"field": field, "message": "must not contain NUL characters"}
        ], (url, error)
    assert await factory.list_links(request_id=request["id"]) == []


async def test_unanswerable_json_is_refused(factory: Factory) -> None:
    """Free-form fields refuse numbers and nesting a JSON answer could not carry."""
    for values, field, message in UNANSWERABLE_CASES:
        body = {"service_type": "entity", "name": "n", **values}
        response = await factory.client.post(f"{ADMIN}/requests", json=body, headers=factory.admin)
        if field is None:
            assert response.status_code == 201, response.text
            assert {k: response.json()["data"][k] for k in values} == values
            continue
        assert response.status_code == 400, (values, response.text)
        assert response.json()["details"] == [{"field": field, "message": message}]
    # a settings value is stored as a string, whatever its size
    response = await factory.client.put(
        f"{ADMIN}/settings/notify", json={"settings": {"big": 2**70}}, headers=factory.admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["big"] == str(2**70)
