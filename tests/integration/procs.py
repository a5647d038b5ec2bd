"""Assign as real processes on a scratch PostgreSQL database, and who leads among dispatchers.

Each process writes its JSON log lines to a file of its own, so a test can read them (e.g. the
``dispatcher became leader`` line). The leader is found from PostgreSQL itself: the backend that
holds the dispatcher's advisory lock, its client port, and the process owning that socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from assign.dispatcher.leader import LOCK_KEY
from assign.testing import databases
from assign.testing.databases import plain_url
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
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


@contextlib.asynccontextmanager
async def migrated_database(admin_url: str, prefix: str, template: str) -> AsyncIterator[str]:
    """A new database cloned from the migrated ``template`` (its ``postgresql://`` URL),
    dropped on exit."""
    async with databases.scratch_database(admin_url, prefix, template=template) as url:
        yield plain_url(url)


async def run_cli(env: dict[str, str], *args: str) -> str:
    """``assign ARGS``; its stdout (the last line is the key for the key-printing commands)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "assign", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP,
        check=False,
    )
    assert done.returncode == 0, f"assign {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (0 when it is gone or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu_seconds(conn: asyncpg.Connection) -> float:
    """CPU time of the PostgreSQL backends now connected to this database (when local)."""
    pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return sum(cpu_seconds(r["pid"]) for r in pids)


class Proc:
    """One ``assign`` subprocess with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "assign", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        self.popen.send_signal(sig)

    async def wait_exit(self, within: float) -> int | None:
        """The exit code, or None if still running after ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            code = self.popen.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.005)
        return self.popen.poll()

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (anything else is skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("msg") == msg]

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (0 once it has exited)."""
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s) and wait for it; idempotent."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


class Processes:
    """Every process a test starts; all of them are stopped and waited for at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, env: dict[str, str], *args: str) -> Proc:
        proc = Proc(name, list(args), env, self.log_dir)
        self.started.append(proc)
        return proc

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

    def close(self) -> None:
        """SIGTERM to every live one at once, then each is waited for (SIGKILL after 10 s)."""
        for proc in self.started:
            if proc.alive():
                proc.send(signal.SIGTERM)
        for proc in self.started:
            proc.close()

    def dispatchers(self) -> list[Proc]:
        return [p for p in self.started if p.args[:1] == ["dispatch"]]


async def wait_ready(proc: Proc, base: str, within: float = STARTUP) -> bool:
    """Whether the API at ``base`` answers /readyz within ``within`` seconds (False as soon as
    the process has exited)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while time.monotonic() < deadline and proc.alive():
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    return True
            await asyncio.sleep(0.05)
    return False


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
