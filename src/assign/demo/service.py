"""Run ``assign serve`` as a child process on a local port, for the demo and for tests.

The child gets only the ``ASSIGN_*`` variables given here (the caller's own are dropped), so it
never opens the database of the shell it was started from by accident. The process handling is
:mod:`assign.testing.procs`, shared with the tests and the benchmarks.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from assign.testing import procs
from assign.testing.procs import ProcessError as ServiceError
from assign.testing.procs import child_environment, free_port, tail

__all__ = [
    "Service",
    "ServiceError",
    "child_environment",
    "free_port",
    "running_service",
    "tail",
]


@dataclass(frozen=True)
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)


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
    args = ["serve", "--host", host, "--port", str(port)]
    if not dispatcher:
        args.append("--no-dispatcher")
    proc = procs.Proc("serve", args, child_environment(env), log_path, append=True)
    service = Service(f"http://{host}:{port}", proc.popen, log_path)
    try:
        if not procs.wait_ready(proc, service.url, startup_timeout):
            if not proc.alive():
                raise ServiceError(
                    f"assign serve exited with status {proc.returncode}:\n" + service.log_tail()
                )
            raise ServiceError(
                f"assign serve not ready after {startup_timeout:.0f}s:\n" + service.log_tail()
            )
        yield service
    finally:
        proc.stop(sig=signal.SIGINT, timeout=15.0)
