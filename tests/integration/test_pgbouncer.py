"""Assign through PgBouncer 1.18 in transaction mode, with a configuration that says nothing
for Assign; with and without ``ASSIGN_DIRECT_DATABASE_URL`` (the database itself).

* ``assign migrate`` through it (twice: the second changes nothing);
* every seed call (tests/api/test_seed_examples.py), in this process, on a Database whose URL
  is PgBouncer's, which finds out it is behind a pooler;
* a small fleet: two ``assign dispatch`` and one ``assign serve --no-dispatcher`` through it.
  Leadership: a session lock on the direct database when it is given, else the lease row.
In every case PgBouncer logs no refused startup parameter and no client error.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from assign.app import create_app
from assign.clock import Clock
from assign.db.engine import Database
from assign.db.migrate import head_revision
from assign.security.crypto import Cipher
from assign.services.context import Context
from tests.api.test_seed_examples import test_every_seed_example as every_seed_example
from tests.conftest import PG_ADMIN_URL, PG_SKIP, TEST_SECRET, make_settings
from tests.factories import Factory
from tests.integration import pgbouncer, small_fleet
from tests.integration.procs import (
    Processes,
    assign_env,
    errors_logged,
    lock_holder_ports,
    plain_url,
    run_cli,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_ADMIN_URL is None, reason=PG_SKIP),
    pytest.mark.skipif(not pgbouncer.AVAILABLE, reason="pgbouncer is not installed"),
    pytest.mark.timeout(400),
]


@pytest.fixture
async def bare_db() -> AsyncIterator[str]:
    """A new, empty database (``postgresql://``), dropped after the test."""
    assert PG_ADMIN_URL is not None
    admin = plain_url(PG_ADMIN_URL)
    name = f"assign_pgb_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
def bouncer(bare_db: str) -> Iterator[pgbouncer.PgBouncer]:
    with pgbouncer.running(bare_db) as running:
        yield running


@pytest.fixture(params=["with-direct-url", "pooler-only"])
def direct(request: pytest.FixtureRequest, bare_db: str) -> str | None:
    """``ASSIGN_DIRECT_DATABASE_URL`` of the case: the database itself, or unset."""
    return bare_db if request.param == "with-direct-url" else None


def env_for(bouncer: pgbouncer.PgBouncer, bare_db: str, direct: str | None, **settings: object):
    env = assign_env(bouncer.url(bare_db), **settings)
    if direct:
        env["ASSIGN_DIRECT_DATABASE_URL"] = direct
    return env


def assert_pgbouncer_content(bouncer: pgbouncer.PgBouncer) -> None:
    log = bouncer.log()
    assert "unsupported startup parameter" not in log, log[-2000:]
    assert "prepared statement" not in log, log[-2000:]
    bad = [line for line in log.splitlines() if " ERROR " in line or " FATAL " in line]
    assert not bad, bad[:5]


async def schema_revision(url: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT version_num FROM alembic_version")  # type: ignore[no-any-return]
    finally:
        await conn.close()


async def test_migrate(bouncer: pgbouncer.PgBouncer, bare_db: str, direct: str | None) -> None:
    env = env_for(bouncer, bare_db, direct)
    await run_cli(env, "migrate")
    assert await schema_revision(bare_db) == head_revision()
    await run_cli(env, "migrate")  # at head already: nothing to do, nothing refused
    assert await schema_revision(bare_db) == head_revision()
    assert "schema at" in await run_cli(env, "migrate")
    assert_pgbouncer_content(bouncer)


async def test_every_seed_call(
    bouncer: pgbouncer.PgBouncer, bare_db: str, direct: str | None
) -> None:
    await run_cli(env_for(bouncer, bare_db, direct), "migrate")
    settings = make_settings(bouncer.url(bare_db), direct_database_url=direct)
    db = Database(settings.database_url, pool_size=4, session_url=settings.direct_database_url)
    ctx = Context(db=db, settings=settings, cipher=Cipher(TEST_SECRET), clock=Clock())
    try:
        app = create_app(context=ctx, migrate=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
            factory = await Factory.create(ctx, http)
            assert db.pooled is True
            await every_seed_example(factory)
            # many connections of the pool at once: no statement prepared by one is met by another
            await asyncio.gather(*(factory.list_links(status="pending") for _ in range(20)))
        assert (await db.session_engine() is None) == (direct is None)
    finally:
        await db.dispose()
    assert_pgbouncer_content(bouncer)


async def test_fleet(
    bouncer: pgbouncer.PgBouncer, bare_db: str, direct: str | None, tmp_path: object
) -> None:
    env = env_for(bouncer, bare_db, direct, **small_fleet.FLEET_SETTINGS)
    await run_cli(env, "migrate")
    procs = Processes(tmp_path)  # type: ignore[arg-type]
    try:
        dispatchers = [procs.start(f"dispatch-{i}", env, "dispatch") for i in range(2)]
        api, base = await procs.serve("api", env)
        await small_fleet.run([base], bare_db, env, links=400)
        conn = await asyncpg.connect(bare_db)
        try:
            locks = await lock_holder_ports(conn)
            lease = await conn.fetch("SELECT holder FROM dispatcher_lease")
        finally:
            await conn.close()
        leaders = [d for d in dispatchers if d.logged("dispatcher became leader")]
        assert len(leaders) == 1, [d.log_tail() for d in dispatchers]
        if direct:
            assert len(locks) == 1 and not lease  # the session lock, on the database itself
        else:
            assert not locks and len(lease) == 1  # the lease row, through PgBouncer
        for proc in [*dispatchers, api]:
            assert not errors_logged(proc), (proc, errors_logged(proc)[:3])
    finally:
        with contextlib.suppress(Exception):
            procs.close()
    assert_pgbouncer_content(bouncer)


async def test_waiting_claim_is_woken(
    bouncer: pgbouncer.PgBouncer, bare_db: str, direct: str | None
) -> None:
    """A claim waiting for work gets a link assigned meanwhile: woken by NOTIFY on the direct
    database, or by polling when only the pooler is known."""
    await run_cli(env_for(bouncer, bare_db, direct), "migrate")
    settings = make_settings(
        bouncer.url(bare_db), direct_database_url=direct, dispatch_interval=0.5
    )
    db = Database(settings.database_url, pool_size=4, session_url=settings.direct_database_url)
    ctx = Context(db=db, settings=settings, cipher=Cipher(TEST_SECRET), clock=Clock())
    try:
        app = create_app(context=ctx, migrate=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
            factory = await Factory.create(ctx, http)
            server = await factory.server()
            (link,) = await factory.links(await factory.request())
            started = asyncio.get_running_loop().time()
            claim = asyncio.create_task(
                http.post(
                    "/api/v1/tool/links/claim",
                    json={"limit": 5, "wait_seconds": 10},
                    headers=factory.tool(server),
                    timeout=30,
                )
            )
            await asyncio.sleep(1.0)
            assert not claim.done()
            assert (await factory.assign(link["id"], server)).status_code == 200
            answer = await claim
            waited = asyncio.get_running_loop().time() - started
        assert [item["id"] for item in answer.json()["data"]] == [link["id"]]
        assert waited < 4, waited
    finally:
        await ctx.hub.close()
        await db.dispose()
    assert_pgbouncer_content(bouncer)
