#!/usr/bin/env python3
"""``make cluster``: the topology of deploy/compose.yaml as local processes, on one machine.

PgBouncer (transaction pooling) before a local PostgreSQL, one ``assign migrate``, two
``assign serve --no-dispatcher`` on two ports and one ``assign dispatch``: the commands of the
Dockerfile's entrypoint (``python -m assign`` is the ``assign`` command), with the environment
compose gives them: ``ASSIGN_DATABASE_URL`` at PgBouncer, ``ASSIGN_DIRECT_DATABASE_URL`` at the
database itself. Runs until Ctrl-C or SIGTERM, then stops every process it started, and exits 0.

    python deploy/cluster.py [--database-url postgresql://me@127.0.0.1:5432/assign_cluster]
        [--pgbouncer-port 6432] [--api-ports 8000,8001] [--metrics-port 9108] [--run-dir .cluster]

The database is created when missing. Logs, PgBouncer's configuration, the generated secret and
admin key live in the run directory. Prints ``cluster ready`` once every API answers /readyz.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ASSIGN = [sys.executable, "-m", "assign"]  # the image's ENTRYPOINT ["assign"]
PGBOUNCER_INI = """\
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    user = os.environ.get("PGUSER") or getpass.getuser()
    parser.add_argument(
        "--database-url", default=f"postgresql://{user}@127.0.0.1:5432/assign_cluster"
    )
    parser.add_argument("--pgbouncer-port", type=int, default=6432)
    parser.add_argument("--api-ports", default="8000,8001", help="two comma-separated ports")
    parser.add_argument("--metrics-port", type=int, default=9108, help="the dispatcher's /metrics")
    parser.add_argument("--run-dir", type=Path, default=Path(".cluster"))
    parser.add_argument("--pgbouncer", default=shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")
    return parser.parse_args(argv)


def with_port(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}:{port}" if auth else f"{host}:{port}"))


async def ensure_database(url: str) -> None:
    """Create the database of ``url`` when it does not exist."""
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
    finally:
        await conn.close()


def secret_in(run_dir: Path, name: str, make: str) -> str:
    """A value kept in the run directory across restarts (mode 600)."""
    path = run_dir / name
    if not path.exists():
        path.write_text(make + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


class Cluster:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir: Path = args.run_dir.resolve()
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.pgbouncer_dir: Path | None = None

    def environment(self) -> dict[str, str]:
        direct = self.args.database_url
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIGN_")}
        env.update(
            ASSIGN_DATABASE_URL=with_port(direct, "127.0.0.1", self.args.pgbouncer_port),
            ASSIGN_DIRECT_DATABASE_URL=direct,
            ASSIGN_SECRET_KEY=os.environ.get("ASSIGN_SECRET_KEY")
            or secret_in(self.run_dir, "secret-key", secrets.token_urlsafe(48)),
            ASSIGN_ADMIN_KEY=os.environ.get("ASSIGN_ADMIN_KEY")
            or secret_in(self.run_dir, "admin-key", "asg_" + secrets.token_urlsafe(32)),
            ASSIGN_METRICS_PORT=str(self.args.metrics_port),
        )
        for name in ("ASSIGN_LOG_LEVEL", "ASSIGN_DISPATCH_INTERVAL", "ASSIGN_RETRY_BASE_SECONDS",
                     "ASSIGN_RETRY_MAX_SECONDS", "ASSIGN_DB_POOL_SIZE"):  # fmt: skip
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.run_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append((name, process))

    def start_pgbouncer(self) -> None:
        if not os.access(self.args.pgbouncer, os.X_OK):
            raise SystemExit(
                f"error: PgBouncer is not installed at {self.args.pgbouncer} "
                "(apt-get install pgbouncer, or --pgbouncer PATH)"
            )
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root: it runs as postgres, in a directory of its own
            directory = Path(tempfile.mkdtemp(prefix="assign-cluster-pgbouncer-"))
            directory.chmod(0o755)
        else:
            directory = self.run_dir / "pgbouncer"
            directory.mkdir(parents=True, exist_ok=True)
        self.pgbouncer_dir = directory
        target = urlsplit(self.args.database_url)
        (directory / "pgbouncer.ini").write_text(
            PGBOUNCER_INI.format(
                host=target.hostname or "127.0.0.1",
                port=target.port or 5432,
                listen=self.args.pgbouncer_port,
                dir=directory,
            )
        )
        (directory / "userlist.txt").write_text(f'"{target.username or getpass.getuser()}" ""\n')
        command = [self.args.pgbouncer, str(directory / "pgbouncer.ini")]
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in [directory, *directory.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            command[1:1] = ["-u", "postgres"]
        self.start("pgbouncer", command)
        wait_for_port(self.args.pgbouncer_port, within=15, what="PgBouncer")

    def run(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(ensure_database(self.args.database_url))
        env = self.environment()
        self.start_pgbouncer()
        migrate = subprocess.run([*ASSIGN, "migrate"], env=env, capture_output=True, text=True)
        if migrate.returncode != 0:
            print(f"assign migrate failed: {migrate.stderr.strip()}", file=sys.stderr)
            return 1
        print(migrate.stdout.strip())
        ports = [int(p) for p in self.args.api_ports.split(",")]
        for i, port in enumerate(ports, 1):
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-dispatcher"]
            self.start(f"api-{i}", [*ASSIGN, *serve], env)
        self.start("dispatch-1", [*ASSIGN, "dispatch"], env)
        for port in ports:
            wait_ready(f"http://127.0.0.1:{port}", within=120)
        print(f"PgBouncer   {env['ASSIGN_DATABASE_URL']}  (transaction pooling)")
        print(f"database    {env['ASSIGN_DIRECT_DATABASE_URL']}")
        for port in ports:
            print(f"API         http://127.0.0.1:{port}  (docs at /docs)")
        print(f"dispatcher  metrics at http://127.0.0.1:{self.args.metrics_port}/metrics")
        print(f"admin key   {env['ASSIGN_ADMIN_KEY']}")
        print(f"logs        {self.run_dir}/*.log, PgBouncer's in {self.pgbouncer_dir}")
        print("cluster ready (Ctrl-C stops it)", flush=True)
        return self.watch()

    def watch(self) -> int:
        stop = False

        def on_signal(_signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop:
            for name, process in self.processes:
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """SIGTERM to every process, the database users first, then wait (SIGKILL after 20 s)."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.pgbouncer_dir is not None and self.pgbouncer_dir.name.startswith("assign-cluster-"):
            shutil.rmtree(self.pgbouncer_dir, ignore_errors=True)


def wait_for_port(port: int, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} is not listening on port {port} after {within:g} s")


def wait_ready(base: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{base} did not answer /readyz within {within:g} s")


def main(argv: list[str] | None = None) -> int:
    cluster = Cluster(parse_args(argv))
    try:
        return cluster.run()
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
