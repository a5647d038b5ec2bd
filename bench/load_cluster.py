"""The processes of ``bench/load.py``: two ``assign serve --no-dispatcher`` and one
``assign dispatch`` on one database, and what their logs say."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path

import asyncpg
import common

from assign.testing import procs

PORTS = range(8400, 8450)


def unavailable(proc: procs.Proc) -> Counter[str]:
    """Causes of a process's 503 answers, from its log ("database unavailable" warnings)."""
    causes: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in proc.log_path.read_text(errors="replace").splitlines():
            if '"database unavailable"' in line:
                with contextlib.suppress(ValueError, AttributeError):
                    causes[json.loads(line).get("error_type", "?")] += 1
    return causes


def errors(proc: procs.Proc) -> list[str]:
    """Error lines of a process's log."""
    try:
        lines = proc.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if '"level":"error"' in line or "Traceback" in line]


class Cluster:
    """The processes under test; every one is stopped (and waited for) on exit."""

    def __init__(self, db_url: str, log_dir: Path, pool_size: int) -> None:
        self.env = procs.child_environment(
            {
                "ASSIGN_DATABASE_URL": db_url,
                "ASSIGN_SECRET_KEY": common.SECRET,
                "ASSIGN_LOG_LEVEL": "WARNING",
                "ASSIGN_DB_POOL_SIZE": str(pool_size),
                "ASSIGN_DISPATCH_INTERVAL": "0.5",
                "ASSIGN_RETRY_BASE_SECONDS": "2",
                "ASSIGN_RETRY_MAX_SECONDS": "10",
            }
        )
        self.processes = procs.Processes(log_dir)
        #: by process name: the exit status, and the CPU seconds used until it was stopped
        self.exit_codes: dict[str, int] = {}
        self.cpu_at_stop: dict[str, float] = {}

    @property
    def procs(self) -> list[procs.Proc]:
        return self.processes.started

    def cli(self, *args: str) -> str:
        return procs.run_cli(self.env, *args, timeout=120)

    def start(self, name: str, *args: str) -> procs.Proc:
        return self.processes.start(name, self.env, *args)

    def serve(self, name: str) -> str:
        port = procs.free_port(PORTS)
        proc = self.start(name, "serve", "--no-dispatcher", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        if procs.wait_ready(proc, base, 60, poll=0.2):
            return base
        if not proc.alive():
            raise RuntimeError(f"{name} exited: {proc.log_path.read_text()[-2000:]}")
        raise RuntimeError(f"{name} not ready in 60 s")

    def stop_all(self) -> None:
        """SIGTERM to each, the last started first, and wait (SIGKILL after 30 s)."""
        for proc in reversed(self.procs):
            if proc.name not in self.exit_codes:
                if proc.alive():
                    self.cpu_at_stop[proc.name] = proc.cpu_seconds()
                self.exit_codes[proc.name] = proc.stop(timeout=30)


async def wait_for_leader(url: str, within: float = 60) -> None:
    """Until the dispatcher holds its leader lock (it is then running, signal handlers set)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + within
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dispatcher took no leadership in {within:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
