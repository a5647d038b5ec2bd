"""Run ``assign serve`` as a child process on a local port, for the demo and for tests.

The child gets only the ``ASSIGN_*`` variables given here (the caller's own are dropped), so it
never opens the database of the shell it was started from by accident.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


class ServiceError(RuntimeError):
    """The service did not start; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def free_port(candidates: Iterable[int] | None = None, host: str = "127.0.0.1") -> int:
    """A port nobody listens on: the first free one of ``candidates``, else one the OS picks."""
    for port in candidates if candidates is not None else [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ServiceError(f"no free port among {candidates}")


def child_environment(assign_env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``ASSIGN_*`` variables, plus ``assign_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIGN_")}
    env.update(assign_env)
    return env


@contextlib.contextmanager
def running_service(
    *,
    env: Mapping[str, str],
    log_path: Path,
    port: int | None = None,
    dispatcher: bool = True,
    host: str = "127.0.0.1",
    startup_timeout: float = 60.0,
) -> Iterator[Service]:
    """``assign serve`` with ``env`` (``ASSIGN_*`` variables) until the block ends; its logs go
    to ``log_path``. Yields once ``/readyz`` answers."""
    port = port or free_port()
    command = [sys.executable, "-m", "assign", "serve", "--host", host, "--port", str(port)]
    if not dispatcher:
        command.append("--no-dispatcher")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=child_environment(env), stdout=log, stderr=subprocess.STDOUT
        )
    service = Service(f"http://{host}:{port}", process, log_path)
    try:
        wait_ready(service, startup_timeout)
        yield service
    finally:
        stop(process)


def wait_ready(service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(
                f"assign serve exited with status {service.process.returncode}:\n"
                + service.log_tail()
            )
        try:
            if httpx.get(service.url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServiceError(f"assign serve not ready after {timeout:.0f}s:\n" + service.log_tail())


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Ask the process to shut down gracefully; kill it if it does not within ``timeout``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
