"""Assign as real processes on a scratch PostgreSQL database, and who leads among dispatchers.

Each process writes its JSON log lines to a file of its own, so a test can read them (e.g. the
``dispatcher became leader`` line). The leader is found from PostgreSQL itself: the backend that
holds the dispatcher's advisory lock, its client port, and the process owning that socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from assign.dispatcher.leader import LOCK_KEY
from assign.testing import databases, procs
from assign.testing.databases import plain_url
from assign.testing.procs import Proc, cpu_seconds
from tests.conftest import TEST_SECRET

#: how long a process may take to start (imports and all) on a busy machine
STARTUP = 120.0
#: the ports these tests may bind
PORTS = range(8350, 8400)
ADMIN = "/api/v1/admin"
WORKER = "/api/v1/worker"
TOOL = "/api/v1/tool"

_LEADER_SQL = """
SELECT a.client_port
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def assign_env(database_url: str, **settings: Any) -> dict[str, str]:
    """The environment of an Assign process: this test's database, no inherited ASSIGN_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIGN_")}
    env.update(
        ASSIGN_DATABASE_URL=plain_url(database_url),
        ASSIGN_SECRET_KEY=TEST_SECRET,
        ASSIGN_LOG_LEVEL="INFO",
        ASSIGN_LOG_JSON="true",
    )
    env.update({f"ASSIGN_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def free_port(ports: range = PORTS) -> int:
    """A port of ``ports`` that nothing listens on right now."""
    return procs.free_port(ports)


@contextlib.asynccontextmanager
async def migrated_database(admin_url: str, prefix: str, template: str) -> AsyncIterator[str]:
    """A new database cloned from the migrated ``template`` (its ``postgresql://`` URL),
    dropped on exit."""
    async with databases.scratch_database(admin_url, prefix, template=template) as url:
        yield plain_url(url)


async def run_cli(env: dict[str, str], *args: str) -> str:
    """``assign ARGS``; its stdout (the last line is the key for the key-printing commands)."""
    return await asyncio.to_thread(procs.run_cli, env, *args, timeout=STARTUP)


async def backend_cpu_seconds(conn: asyncpg.Connection) -> float:
    """CPU time of the PostgreSQL backends now connected to this database (when local)."""
    pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return sum(cpu_seconds(r["pid"]) for r in pids)


class Processes(procs.Processes):
    """Every process a test starts; all of them are stopped and waited for at teardown."""

    async def serve(self, name: str, env: dict[str, str]) -> tuple[Proc, str]:
        """``assign serve --no-dispatcher`` on a free port; the process and its base URL."""
        for _ in range(5):
            port = free_port()
            proc = self.start(name, env, "serve", "--no-dispatcher", "--port", str(port))
            base = f"http://127.0.0.1:{port}"
            if await wait_ready(proc, base, within=STARTUP):
                return proc, base
            if proc.alive() or "address already in use" not in proc.log_tail().lower():
                break
            # another program took the port between the probe and the bind: another port
        raise AssertionError(f"assign serve did not get ready:\n{proc.log_tail()}")

    def dispatchers(self) -> list[Proc]:
        return [p for p in self.started if p.args[:1] == ["dispatch"]]


async def wait_ready(proc: Proc, base: str, within: float = STARTUP) -> bool:
    """Whether the API at ``base`` answers /readyz within ``within`` seconds (False as soon as
    the process has exited)."""
    return await procs.wait_ready_async(proc, base, within)


# --- who leads ---------------------------------------------------------------------------------


async def lock_holder_ports(conn: asyncpg.Connection) -> list[int]:
    """Client ports of the backends holding the dispatcher lock in this database (0 or 1)."""
    rows = await conn.fetch(_LEADER_SQL, LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF)
    return [int(r["client_port"]) for r in rows]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _inodes_of_local_port(port: int, remote_port: int) -> set[int]:
    """Inodes of the TCP sockets bound locally to ``port`` and connected to ``remote_port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                if int(local.rsplit(":", 1)[1], 16) == port and (
                    int(remote.rsplit(":", 1)[1], 16) == remote_port
                ):
                    found.add(inode)
    return found


def pg_port(url: str) -> int:
    return make_url(url).port or 5432


async def leader(conn: asyncpg.Connection, candidates: Iterable[Proc], port: int) -> Proc | None:
    """The live process whose connection holds the dispatcher lock, if any."""
    for client_port in await lock_holder_ports(conn):
        inodes = _inodes_of_local_port(client_port, port)
        for proc in candidates:
            if proc.alive() and inodes & _socket_inodes(proc.pid):
                return proc
    return None


async def wait_leader(
    conn: asyncpg.Connection,
    candidates: Iterable[Proc],
    port: int,
    *,
    within: float,
    poll: float = 0.005,
) -> tuple[Proc | None, float]:
    """(the leader, seconds waited for one); (None, within) when none showed up in time."""
    candidates = list(candidates)
    started = time.monotonic()
    while time.monotonic() - started < within:
        found = await leader(conn, candidates, port)
        if found is not None:
            return found, time.monotonic() - started
        await asyncio.sleep(poll)
    return None, within


def log_time(record: dict[str, Any]) -> float:
    """The epoch seconds of a log record's ``ts``."""
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


def errors_logged(proc: Proc) -> list[dict[str, Any]]:
    return [r for r in proc.records() if r.get("level") in ("error", "critical")]
