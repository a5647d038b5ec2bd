"""The Assign processes of one ``bench/e2e.py`` configuration: ``assign serve`` (one or two
API processes), and ``assign dispatch`` when separate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time

import asyncpg
import common
import httpx


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat", "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


class Service:
    """The Assign processes of one configuration."""

    def __init__(
        self, url: str, port: int, *, api_processes: int = 1, separate_dispatcher: bool = False
    ) -> None:
        self.url, self.port = url, port
        self.base = f"http://127.0.0.1:{port}"
        self.api_processes = api_processes
        self.separate = separate_dispatcher
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = tempfile.NamedTemporaryFile(prefix="assign-e2e-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> Service:
        env = {
            **common.assign_env(self.url),
            "ASSIGN_LOG_LEVEL": "WARNING",
            "ASSIGN_DISPATCH_INTERVAL": "1",
        }
        serve = [sys.executable, "-m", "assign", "serve", "--port", str(self.port)]
        if self.api_processes > 1:
            serve += ["--workers", str(self.api_processes)]
        if self.separate:
            serve.append("--no-dispatcher")
        self.procs.append(
            subprocess.Popen(serve, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        )
        if self.separate:
            dispatch = [sys.executable, "-m", "assign", "dispatch"]
            self.procs.append(
                subprocess.Popen(dispatch, env=env, stdout=self.log, stderr=subprocess.STDOUT)
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    time.sleep(0.5 * self.api_processes)
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"assign serve did not answer; see {self.log.name}")

    def pids(self) -> list[int]:
        return [p for proc in self.procs for p in _descendants(proc.pid)]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


class BackendCpu:
    """CPU time of the PostgreSQL backends serving Assign (``application_name`` assign...),
    sampled while a run lasts: the API's pool opens connections as the load grows (and closes
    its overflow ones), so the backends alive at the start are not those at the end. A backend
    first seen during the run counts from zero; one that ends counts up to its last sample."""

    def __init__(self, conn: asyncpg.Connection, every: float = 0.05) -> None:
        self.conn, self.every = conn, every
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.running = False
        self.task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'assign%'"
        )
        for (pid,) in rows:
            cpu = common.cpu_seconds([pid])
            self.first.setdefault(pid, 0.0 if self.running else cpu)
            if cpu or pid not in self.last:  # 0: it ended between the query and the read
                self.last[pid] = cpu

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._sample()

    async def start(self) -> None:
        await self._sample()
        self.running = True
        self.task = asyncio.create_task(self._poll())

    async def stop(self) -> float:
        """Seconds of CPU the backends used since :meth:`start`."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self._sample()
        return sum(self.last[p] - self.first[p] for p in self.last)

    @property
    def backends(self) -> int:
        return len(self.last)
