"""``assign`` child processes for the demo, the tests and the benchmarks.

A :class:`Proc` is ``python -m assign ARGS`` with its output in a log file of its own; it can be
waited for until its API answers (:func:`wait_ready`, :func:`wait_ready_async`) and is stopped
with a signal, then SIGKILL when it does not exit in time, and always waited for
(:meth:`Proc.stop`). :class:`Processes` stops every process it started at once. The caller picks
the environment; :func:`child_environment` gives this process's own without its ``ASSIGN_*``
variables, so a child never opens the database of the shell it was started from by accident.
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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx


class ProcessError(RuntimeError):
    """An ``assign`` process did not start or failed; the message ends with its output."""


def child_environment(assign_env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``ASSIGN_*`` variables, plus ``assign_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIGN_")}
    env.update(assign_env)
    return env


def _shared_out(candidates: Iterable[int]) -> list[int]:
    """This test process's share of ``candidates``: all of them, or under pytest-xdist the
    ports equal to the worker's number modulo the number of workers, so that two workers
    probing at the same moment never settle on the same port, whatever ranges they probe."""
    ports = list(candidates)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count < 2:
        return ports
    mine = [port for port in ports if port % count == int(worker[2:]) % count]
    return mine or ports


def free_port(candidates: Iterable[int] | None = None, host: str = "127.0.0.1") -> int:
    """A port nobody listens on: the first free one of ``candidates`` (this test worker's share
    of them under pytest-xdist), else one the OS picks."""
    for port in _shared_out(candidates) if candidates is not None else [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ProcessError(f"no free port among {candidates}")


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the file at ``path`` ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (0 when it is gone or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 120.0) -> str:
    """``assign ARGS`` with the environment ``env``; its stdout (ProcessError on failure)."""
    done = subprocess.run(
        [sys.executable, "-m", "assign", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise ProcessError(f"assign {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def stop(
    process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> int:
    """Send ``sig`` (if still running), wait ``timeout`` seconds, then SIGKILL; the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Proc:
    """One ``assign ARGS`` subprocess, its output (stdout and stderr) in ``log_path``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        append: bool = False,
    ) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab" if append else "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "assign", *args],
            env=dict(env),
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
        """The JSON log records whose ``msg`` is ``msg``."""
        return [r for r in self.records() if r.get("msg") == msg]

    async def wait_logged(self, msg: str, *, within: float = 5.0) -> list[dict[str, Any]]:
        """:meth:`logged`, once it finds a record or ``within`` seconds have passed (a line is
        written just after what it reports, so a test that saw the act may be ahead of it)."""
        deadline = time.monotonic() + within
        while True:
            found = self.logged(msg)
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.02)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (0 once it has exited)."""
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Stop it (``sig``, then SIGKILL after ``timeout``) and wait for it; the exit code.
        Idempotent."""
        code = stop(self.popen, sig=sig, timeout=timeout)
        self._log.close()
        return code

    def close(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s) and wait for it; idempotent."""
        self.stop()


class Processes:
    """Every process of a test or a benchmark; all of them are stopped and waited for at the end
    (:meth:`close`)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, env: Mapping[str, str], *args: str) -> Proc:
        """``assign ARGS`` as ``name``, logging to ``log_dir/name.log``."""
        proc = Proc(name, list(args), env, self.log_dir / f"{name}.log")
        self.started.append(proc)
        return proc

    def close(self, timeout: float = 10.0) -> None:
        """SIGTERM to every live one at once, then each is waited for (SIGKILL after
        ``timeout``)."""
        for proc in self.started:
            if proc.alive():
                proc.send(signal.SIGTERM)
        for proc in self.started:
            proc.stop(timeout=timeout)


def _answers(url: str, timeout: float) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=timeout).status_code == 200
    return False


def wait_ready(
    proc: Proc, base: str, within: float, *, path: str = "/readyz", poll: float = 0.1
) -> bool:
    """Whether the API at ``base`` answers ``path`` with a 200 within ``within`` seconds (False
    as soon as the process has exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.alive():
        if _answers(base + path, timeout=1):
            return True
        time.sleep(poll)
    return False


async def wait_ready_async(
    proc: Proc, base: str, within: float, *, path: str = "/readyz", poll: float = 0.05
) -> bool:
    """:func:`wait_ready` for a test's event loop."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while time.monotonic() < deadline and proc.alive():
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(path)).status_code == 200:
                    return True
            await asyncio.sleep(poll)
    return False
