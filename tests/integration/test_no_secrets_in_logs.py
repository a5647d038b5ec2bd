"""A full run of `assign serve` logs no API key and no password, even on errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PASSWORD = "Pa55-w0rd-that-must-not-leak"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "assign", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_full_run_logs_no_key_or_password(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ASSIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'assign.db'}",
        "ASSIGN_DISPATCH_INTERVAL": "0.1",
        "ASSIGN_LOG_LEVEL": "DEBUG",
    }
    env.pop("ASSIGN_SECRET_KEY", None)
    assign_out = _cli(env, "server", "add", "assign-1", "--service", "assign")
    tool_out = _cli(env, "server", "add", "tool-1", "--max-threads", "5")
    admin_out = _cli(env, "admin-key", "create")
    assign_key, tool_key, admin_key = (o.splitlines()[0] for o in (assign_out, tool_out, admin_out))
    keys = [assign_key, tool_key, admin_key]
    assert all(k.startswith("asg_") for k in keys)

    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "assign", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(100):
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            admin = {"X-API-Key": admin_key}
            worker = {"X-API-Key": assign_key}
            tool = {"X-API-Key": tool_key}
            http.put(
                "/api/v1/admin/settings/rate_limit",
                json={"settings": {"cooldown_minutes": "0"}},
                headers=admin,
            )
            request = http.post(
                "/api/v1/admin/requests",
                json={"service_type": "entity", "name": "c"},
                headers=admin,
            )
            assert request.status_code == 201, request.text
            request_id = request.json()["data"]["id"]
            account = {
                "group_id": "2b1c4c64-52c6-4b9c-9a43-1b1d3c1e7a10",
                "email": "a@x",
                "password": PASSWORD,
            }
            assert (
                http.post("/api/v1/admin/accounts", json=account, headers=admin).status_code == 201
            )
            assert (
                http.get("/api/v1/worker/accounts", headers=worker).json()["data"][0]["password"]
                == PASSWORD
            )
            link = {
                "request_id": request_id,
                "service_type": "entity",
                "email": "a@x",
                "password": PASSWORD,
            }
            assert (
                http.post(
                    "/api/v1/worker/links/bulk", json={"links": [link]}, headers=worker
                ).status_code
                == 200
            )
            http.post("/api/v1/tool/heartbeat", json={}, headers=tool)
            claimed: list[dict] = []
            for _ in range(50):
                claimed = http.post("/api/v1/tool/links/claim", json={}, headers=tool).json()[
                    "data"
                ]
                if claimed:
                    break
                time.sleep(0.1)
            assert claimed and claimed[0]["password"] == PASSWORD
            http.put(
                f"/api/v1/tool/links/{claimed[0]['id']}/result",
                json={"status": "completed"},
                headers=tool,
            )
            # errors too: wrong kinds of key, a bad body holding a password, an unknown route
            assert http.get("/api/v1/worker/links", headers=tool).status_code == 401
            assert (
                http.get(
                    "/api/v1/admin/servers", headers={"X-API-Key": assign_key + "x"}
                ).status_code
                == 401
            )
            bad = {
                "links": [{"request_id": "nope", "service_type": "entity", "password": PASSWORD}]
            }
            assert (
                http.post("/api/v1/worker/links/bulk", json=bad, headers=worker).status_code == 400
            )
            assert (
                http.get(
                    f"/api/v1/worker/links?email={PASSWORD}&k={admin_key}", headers=worker
                ).status_code
                == 200
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log_path.read_text()
    assert '"msg":"request"' in text  # the access log was written
    for secret in [*keys, PASSWORD]:
        assert secret not in text
