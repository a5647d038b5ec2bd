"""Fixtures of the fault tests: a private PostgreSQL server they may stop, restart and cut off,
and real ``assign serve`` processes on it.

The shared PostgreSQL of the other tests is never touched: each session starts its own cluster
(``initdb`` into a temporary directory, ``pg_ctl`` on a port of 55432-55439, trust
authentication for the current OS user's name) and removes it at the end. PostgreSQL refuses to
run as root, so under root its programs run as the ``postgres`` OS user. Without the PostgreSQL
15 programs (``ASSIGN_TEST_PG_BIN``, default ``/usr/lib/postgresql/15/bin``) or, under root,
without a ``postgres`` user, the fault tests skip saying so (a failure when
``ASSIGN_TEST_REQUIRE_POSTGRES=1``: they are marked ``postgres``).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from assign.demo.service import Service, free_port, running_service
from assign.testing import databases
from tests.conftest import TEST_SECRET

PG_BIN = Path(os.environ.get("ASSIGN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORTS = range(55432, 55440)
#: ports the ``assign serve`` processes of these tests may use
API_PORTS = range(8400, 8450)
ADMIN_KEY = "fault-admin-key-" + "k" * 24


def _missing_prerequisite() -> str | None:
    for program in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / program).is_file():
            return (
                f"fault tests need the PostgreSQL 15 programs: {PG_BIN / program} is missing "
                "(set ASSIGN_TEST_PG_BIN to their directory)"
            )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "fault tests run as root need a 'postgres' OS user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "fault tests run as root need runuser(1) to run PostgreSQL as 'postgres'"
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of this test session only, in a temporary directory."""

    PREFIX = "assign-faults-pg-"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix=self.PREFIX))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = getpass.getuser()
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        if root is None:
            (self.root / "owner.pid").write_text(str(os.getpid()))
            if self._as_postgres:
                entry = pwd.getpwnam("postgres")
                os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @classmethod
    def remove_orphans(cls) -> None:
        """Stop and remove the clusters of test sessions that died without cleaning up."""
        for root in Path(tempfile.gettempdir()).glob(cls.PREFIX + "*"):
            try:
                owner = int((root / "owner.pid").read_text())
                os.kill(owner, 0)
                continue  # its session is alive
            except ProcessLookupError:
                pass
            except (OSError, ValueError):
                continue  # not ours to judge
            cls(root).remove()

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                + self.log_tail()
            )
        return done

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", self.user, "-E", "UTF8")
        self.port = free_port(PG_PORTS)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off -c full_page_writes=off -c shared_buffers=64MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    async def execute(self, sql: str, *args: object, database: str = "postgres") -> str:
        conn = await asyncpg.connect(self.url(database), timeout=5)
        try:
            return await conn.execute(sql, *args)  # type: ignore[no-any-return]
        finally:
            await conn.close()

    async def fetch(
        self, sql: str, *args: object, database: str = "postgres"
    ) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url(database), timeout=5)
        try:
            return await conn.fetch(sql, *args)  # type: ignore[no-any-return]
        finally:
            await conn.close()

    async def terminate_backends(self, database: str) -> int:
        """``pg_terminate_backend`` of every connection to ``database`` but this one; how many."""
        rows = await self.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return sum(1 for r in rows if r[0])

    def remove(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server, running; stopped and removed at the end of the session."""
    missing = _missing_prerequisite()
    if missing:
        pytest.skip(missing)
    PrivatePostgres.remove_orphans()
    server = PrivatePostgres()
    try:
        server.init()
        for attempt in range(3):  # another session may take the port first
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = free_port(PG_PORTS)
        yield server
    finally:
        server.remove()


@dataclass
class FaultDatabase:
    """A migrated database on the private server, with the keys the tests use."""

    pg: PrivatePostgres
    name: str
    worker_key: str
    tool_key: str
    tool_server_id: str
    work_dir: Path

    @property
    def url(self) -> str:
        return self.pg.url(self.name)

    @property
    def env(self) -> dict[str, str]:
        return {
            "ASSIGN_DATABASE_URL": self.url,
            "ASSIGN_SECRET_KEY": TEST_SECRET,
            "ASSIGN_ADMIN_KEY": ADMIN_KEY,
            "ASSIGN_LOG_LEVEL": "WARNING",
            "ASSIGN_DISPATCH_INTERVAL": "0.5",
            "ASSIGN_SERVER_TIMEOUT_MINUTES": "60",
        }

    def cli(self, *args: str) -> str:
        """``assign ARGS`` on this database; its stdout."""
        from assign.demo.service import child_environment

        done = subprocess.run(
            [sys.executable, "-m", "assign", *args],
            env=child_environment(self.env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"assign {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    @contextlib.contextmanager
    def serve(
        self, *, dispatcher: bool = False, name: str = "serve", env: dict[str, str] | None = None
    ) -> Iterator[Service]:
        """``assign serve`` on a free port of 8400-8449 until the block ends (then stopped and
        waited for, killed if need be, whatever happened in the block); ``env`` adds variables."""
        log_path = self.work_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with running_service(
            env={**self.env, **(env or {})},
            log_path=log_path,
            port=free_port(API_PORTS),
            dispatcher=dispatcher,
        ) as service:
            yield service

    async def count(self, sql: str, *args: object) -> int:
        rows = await self.pg.fetch(sql, *args, database=self.name)
        return int(rows[0][0])


@pytest.fixture(scope="session")
def fault_template(
    private_pg: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory
) -> FaultDatabase:
    """A database set up once by the CLI (``assign migrate``, ``assign server add`` of an assign
    server and a tool server), copied for each test."""
    db = FaultDatabase(
        private_pg, "assign_fault_template", "", "", "", tmp_path_factory.mktemp("t")
    )
    asyncio.run(databases.create_database(private_pg.url(), db.name))
    db.cli("migrate")
    db.worker_key = db.cli("server", "add", "fault-assign", "--service", "assign").split()[-1]
    db.tool_key = db.cli("server", "add", "fault-tool", "--service", "tool", "--max-threads", "500")
    db.tool_key = db.tool_key.split()[-1]
    rows = asyncio.run(
        private_pg.fetch("SELECT id FROM servers WHERE service = 'tool'", database=db.name)
    )
    db.tool_server_id = str(rows[0][0])
    return db


@pytest.fixture
def fault_db(
    private_pg: PrivatePostgres, fault_template: FaultDatabase, tmp_path: Path
) -> Iterator[FaultDatabase]:
    """A fresh copy of the template database on the private server, dropped afterwards."""
    if not private_pg.running():  # a test that failed while the server was down
        private_pg.start()
    name = f"assign_fault_{uuid.uuid4().hex[:8]}"
    asyncio.run(databases.create_database(private_pg.url(), name, template=fault_template.name))
    t = fault_template
    db = FaultDatabase(private_pg, name, t.worker_key, t.tool_key, t.tool_server_id, tmp_path)
    try:
        yield db
    finally:
        if not private_pg.running():
            private_pg.start()
        asyncio.run(databases.drop_database(private_pg.url(), name))
