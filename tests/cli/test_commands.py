"""The operator's commands on both databases: servers, admin keys, stats, --json, --version,
and failures that are one line on stderr with status 1 (never a traceback)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from assign import __version__
from assign.cli import app
from tests.conftest import TEST_SECRET
from tests.factories import Factory

runner = CliRunner()


@pytest.fixture
def env(clean_database: str) -> dict[str, str]:
    return {"ASSIGN_DATABASE_URL": clean_database, "ASSIGN_SECRET_KEY": TEST_SECRET}


def run(env: dict[str, str], *args: str) -> Any:
    result = runner.invoke(app, list(args), env={"COLUMNS": "40", **env})
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def run_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, *args, "--json").stdout)


def fails(env: dict[str, str], *args: str) -> str:
    """The one line a failing command prints on stderr."""
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"assign {__version__}"


def test_servers_added_listed_set_and_deleted(env: dict[str, str]) -> None:
    added = run_json(
        env, "server", "add", "tool-01", "--max-threads", "7", "--service-types", "social,entity"
    )
    assert added["api_key"].startswith("asg_")
    assert added["service_types"] == ["social", "entity"] and added["max_threads"] == 7
    key = run(env, "server", "add", "feeder", "--service", "assign").stdout.strip()
    assert key.startswith("asg_") and key != added["api_key"]

    listed = run_json(env, "server", "list")
    assert {s["name"] for s in listed} == {"tool-01", "feeder"}
    assert all("api_key" not in s and "api_key_hash" not in s for s in listed)
    # plain output (not a terminal): every id whole, whatever the width
    table = run(env, "server", "list").stdout
    assert added["id"] in table and "social,entity" in table
    assert added["api_key"] not in table

    changed = run_json(env, "server", "set-status", added["id"], "maintenance")
    assert changed["status"] == "maintenance"
    assert run_json(env, "server", "list")[0]["status"] in ("maintenance", "online")
    run(env, "server", "delete", added["id"])
    assert [s["name"] for s in run_json(env, "server", "list")] == ["feeder"]


def test_admin_keys_created_listed_and_revoked(env: dict[str, str]) -> None:
    key = run(env, "admin-key", "create", "--name", "ops").stdout.strip()
    created = run_json(env, "admin-key", "create", "--name", "ci")
    keys = run_json(env, "admin-key", "list")
    assert [k["name"] for k in keys] == ["ops", "ci"]
    listing = run(env, "admin-key", "list").stdout
    assert key not in listing and created["key"] not in listing and "key_hash" not in listing
    run(env, "admin-key", "revoke", keys[0]["id"])
    assert [k["name"] for k in run_json(env, "admin-key", "list")] == ["ci"]
    line = fails(env, "admin-key", "revoke", keys[0]["id"])
    assert "no admin key has that id" in line and "assign admin-key list" in line


def test_read_only_admin_keys(env: dict[str, str]) -> None:
    created = run_json(env, "admin-key", "create", "--name", "viewer", "--read-only")
    assert created["read_only"] is True and created["key"].startswith("asg_")
    assert run_json(env, "admin-key", "create", "--name", "ops")["read_only"] is False
    listed = {k["name"]: k["read_only"] for k in run_json(env, "admin-key", "list")}
    assert listed == {"viewer": True, "ops": False}


def test_stats_as_json(env: dict[str, str]) -> None:
    run(env, "server", "add", "tool-01", "--max-threads", "3")
    data = run_json(env, "stats")
    assert data["servers"] == {"online": 1, "active_tasks": 0, "max_threads": 3}
    assert data["links"] == {} and data["requests"] == {}
    assert "servers" in run(env, "stats").stdout


@pytest.mark.parametrize(
    "args",
    [
        ("server", "delete", str(uuid.UUID(int=7))),
        ("server", "set-status", str(uuid.UUID(int=7)), "online"),
    ],
)
def test_unknown_server_id_is_one_line(env: dict[str, str], args: tuple[str, ...]) -> None:
    line = fails(env, *args)
    assert "no server has that id" in line and "assign server list" in line


def test_bad_arguments_are_one_line(env: dict[str, str]) -> None:
    assert "is not a server id" in fails(env, "server", "delete", "nope")
    assert "online, offline, maintenance" in fails(
        env, "server", "set-status", str(uuid.UUID(int=1)), "asleep"
    )
    assert "unknown service type blog" in fails(
        env, "server", "add", "x", "--service-types", "social,blog"
    )


async def test_server_with_queued_links_is_not_deleted(
    env: dict[str, str], factory: Factory
) -> None:
    server = await factory.server()
    await factory.links(await factory.request(), 2, server_id=server["id"])
    line = await asyncio.to_thread(fails, env, "server", "delete", server["id"])
    assert "still has links" in line and "set-status ID maintenance" in line
    assert (await factory.get_server(server["id"]))["active_tasks"] == 2


def test_settings_that_do_not_parse_are_one_line(env: dict[str, str]) -> None:
    line = fails({**env, "ASSIGN_DISPATCH_INTERVAL": "soon"}, "stats")
    assert "ASSIGN_DISPATCH_INTERVAL='soon'" in line and "valid number" in line
    line = fails({**env, "ASSIGN_SECRET_KEY": "short"}, "server", "list")
    assert "ASSIGN_SECRET_KEY" in line and "32 characters" in line and "short" not in line


@pytest.mark.parametrize("command", [("stats",), ("server", "list"), ("migrate",)])
def test_unreachable_database_is_one_line(command: tuple[str, ...]) -> None:
    env = {
        "ASSIGN_DATABASE_URL": "postgresql://root:hunter2@127.0.0.1:1/assign",
        "ASSIGN_SECRET_KEY": TEST_SECRET,
    }
    line = fails(env, *command)
    assert "cannot use the database postgresql://root:***@127.0.0.1:1/assign" in line
    assert "Check ASSIGN_DATABASE_URL" in line and "hunter2" not in line


def test_missing_sqlite_directory_is_one_line(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/assign.db"
    line = fails({"ASSIGN_DATABASE_URL": url}, "stats")
    assert "cannot use the database" in line


@pytest.mark.postgres
def test_missing_and_unmigrated_postgres_databases_are_one_line(pg_url: str) -> None:
    from assign.testing.databases import admin_execute
    from tests.conftest import PG_ADMIN_URL, _with_database

    assert PG_ADMIN_URL is not None

    env = {
        "ASSIGN_DATABASE_URL": _with_database(pg_url, "assign_nowhere_0"),
        "ASSIGN_SECRET_KEY": TEST_SECRET,
    }
    assert 'database "assign_nowhere_0" does not exist' in fails(env, "stats")
    name = f"assign_empty_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_execute(PG_ADMIN_URL, f'CREATE DATABASE "{name}"'))
    try:
        env["ASSIGN_DATABASE_URL"] = _with_database(pg_url, name)
        assert "run `assign migrate`" in fails(env, "stats")
        assert "run `assign migrate` first" in fails(env, "dispatch")
    finally:
        asyncio.run(admin_execute(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def future_schema(clean_database: str) -> Any:
    """The database as a newer release would leave it: a revision this one does not know."""
    from assign.db.engine import Database
    from assign.db.migrate import head_revision

    db = Database(clean_database)

    async def stamp(revision: str) -> None:
        async with db.transaction() as conn:
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
            )

    await stamp("9999_from_the_future")
    yield
    await stamp(head_revision())
    await db.dispose()


@pytest.mark.parametrize(
    "command", [("serve", "--port", "1"), ("dispatch",), ("migrate",), ("stats",)]
)
async def test_a_schema_newer_than_this_release_is_refused(
    env: dict[str, str], future_schema: None, command: tuple[str, ...]
) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "assign", *command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    line = done.stderr
    assert "schema is at revision 9999_from_the_future, newer than this Assign" in line
    assert "upgrade Assign" in line


def test_migrate_says_which_revision_it_found_and_left(tmp_path: Any) -> None:
    from assign.db.migrate import head_revision

    env = {
        "ASSIGN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}",
        "ASSIGN_SECRET_KEY": TEST_SECRET,
    }
    head = head_revision()
    assert run(env, "migrate", "0004").stdout.split() == ["schema", "at", "0004", "(was", "empty)"]
    assert run(env, "migrate").stdout.split() == ["schema", "at", head, "(was", "0004)"]
    assert run(env, "migrate").stdout.split() == ["schema", "at", head, "(up", "to", "date)"]
