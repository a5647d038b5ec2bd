"""``make cluster`` (deploy/cluster.py) on free ports and a scratch database: PgBouncer, one
migration, two ``assign serve --no-dispatcher``, one ``assign dispatch``; a small fleet through
both APIs; SIGTERM stops every process and the script exits 0."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN_URL, PG_SKIP
from tests.integration import pgbouncer, small_fleet
from tests.integration.procs import free_port, lock_holder_ports, plain_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_ADMIN_URL is None, reason=PG_SKIP),
    pytest.mark.skipif(not pgbouncer.AVAILABLE, reason="pgbouncer is not installed"),
    pytest.mark.timeout(400),
]
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "cluster.py"


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def start(command: list[str], env: dict[str, str], out_path: Path) -> subprocess.Popen[bytes]:
    with out_path.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        out = read(path)
        if text in out:
            return out
        assert process.poll() is None, f"deploy/cluster.py exited:\n{out}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {text!r} within 180 s:\n{read(path)}")


async def test_cluster_runs_a_fleet() -> None:
    assert PG_ADMIN_URL is not None
    admin = plain_url(PG_ADMIN_URL)
    name = f"assign_cluster_{uuid.uuid4().hex[:8]}"
    database = admin.rsplit("/", 1)[0] + "/" + name
    run_dir = Path(tempfile.mkdtemp(prefix="assign-cluster-test-"))
    bouncer_port = pgbouncer._free_port()
    first = free_port()
    api_ports = [first, free_port(range(first + 1, 8400))]
    metrics_port = free_port(range(9300, 9350))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIGN_")}
    env.update({f"ASSIGN_{k.upper()}": str(v) for k, v in small_fleet.FLEET_SETTINGS.items()})
    env["ASSIGN_LOG_LEVEL"] = "INFO"
    out_path = run_dir / "cluster.out"
    command = [sys.executable, str(SCRIPT), "--database-url", database,
               "--pgbouncer-port", str(bouncer_port), "--api-ports", ",".join(map(str, api_ports)),
               "--metrics-port", str(metrics_port), "--run-dir", str(run_dir / "run")]  # fmt: skip
    process = start(command, env, out_path)
    try:
        await wait_for_line(out_path, "cluster ready", process)
        secret = read(run_dir / "run" / "secret-key").strip()
        cli_env = {
            **env,
            "ASSIGN_DATABASE_URL": database.replace(":5432/", f":{bouncer_port}/"),
            "ASSIGN_DIRECT_DATABASE_URL": database,
            "ASSIGN_SECRET_KEY": secret,
        }
        bases = [f"http://127.0.0.1:{port}" for port in api_ports]
        await small_fleet.run(bases, database, cli_env, links=400)
        conn = await asyncpg.connect(database)
        try:
            assert len(await lock_holder_ports(conn)) == 1  # the lock, on the database itself
        finally:
            await conn.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
        for process_name in ("api-1", "api-2", "dispatch-1"):
            log = read(run_dir / "run" / f"{process_name}.log")
            assert '"level":"error"' not in log, process_name
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
