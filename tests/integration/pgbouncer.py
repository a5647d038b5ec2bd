"""PgBouncer (Debian's 1.18) in transaction mode before the local PostgreSQL, for one test.

Its configuration says nothing for Assign: no ``ignore_startup_parameters``, no prepared
statement support (1.18 has none), ``auth_type = trust`` with an ``auth_file`` for the role.
PgBouncer refuses to run as root; as root it is started with ``-u postgres``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from assign.testing import procs

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
AVAILABLE = os.access(BINARY, os.X_OK)
#: the ports these tests may give PgBouncer
PORTS = range(6440, 6499)

INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


@dataclass
class PgBouncer:
    port: int
    directory: Path

    def url(self, database_url: str) -> str:
        """``database_url`` with PgBouncer's address instead of PostgreSQL's."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    return procs.free_port(PORTS)


@contextlib.contextmanager
def running(postgres_url: str, user: str = "root") -> Iterator[PgBouncer]:
    """PgBouncer on a free port before the PostgreSQL of ``postgres_url``; stopped on exit."""
    target = make_url(postgres_url)
    directory = Path(tempfile.mkdtemp(prefix="assign-pgbouncer-"))
    directory.chmod(0o755)
    port = _free_port()
    (directory / "pgbouncer.ini").write_text(
        INI.format(
            host=target.host or "127.0.0.1", port=target.port or 5432, listen=port, dir=directory
        )
    )
    (directory / "userlist.txt").write_text(f'"{target.username or user}" ""\n')
    command = [BINARY, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        for path in [directory, *directory.iterdir()]:
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                log = (directory / "pgbouncer.log").read_text(errors="replace")
                raise RuntimeError(f"PgBouncer did not start:\n{log}")
            time.sleep(0.05)
        yield PgBouncer(port, directory)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
