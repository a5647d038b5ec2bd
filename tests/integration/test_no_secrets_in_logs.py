"""A full run of `assign serve` logs no API key and no password, even on errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from assign.testing import procs

PASSWORD = "Pa55-w0rd-that-must-not-leak"


def _keys(env: dict[str, str]) -> tuple[str, str, str]:
    """An assign server's, a tool server's and an admin key, made with the CLI."""
    outs = [
        procs.run_cli(env, "server", "add", "assign-1", "--service", "assign", timeout=60),
        procs.run_cli(env, "server", "add", "tool-1", "--max-threads", "5", timeout=60),
        procs.run_cli(env, "admin-key", "create", timeout=60),
    ]
    assign_key, tool_key, admin_key = (o.strip().splitlines()[0] for o in outs)
    assert all(k.startswith("asg_") for k in (assign_key, tool_key, admin_key))
    return assign_key, tool_key, admin_key


def _run_a_link(http: httpx.Client, admin: dict[str, str], worker: dict[str, str],
                tool: dict[str, str]) -> None:  # fmt: skip
    """A campaign, an account and a link with a password, claimed and completed."""
    http.put(
        "/api/v1/admin/settings/rate_limit",
        json={"settings": {"cooldown_minutes": "0"}},
        headers=admin,
    )
    request = http.post(
        "/api/v1/admin/requests", json={"service_type": "entity", "name": "c"}, headers=admin
    )
    assert request.status_code == 201, request.text
    request_id = request.json()["data"]["id"]
    account = {
        "group_id": "2b1c4c64-52c6-4b9c-9a43-1b1d3c1e7a10",
        "email": "a@x",
        "password": PASSWORD,
    }
    assert http.post("/api/v1/admin/accounts", json=account, headers=admin).status_code == 201
    accounts = http.get(
        "/api/v1/worker/accounts", params={"group_id": account["group_id"]}, headers=worker
    ).json()["data"]
    assert accounts[0]["password"] == PASSWORD
    link = {"request_id": request_id, "service_type": "entity", "email": "a@x",
            "password": PASSWORD}  # fmt: skip
    response = http.post("/api/v1/worker/links/bulk", json={"links": [link]}, headers=worker)
    assert response.status_code == 200
    http.post("/api/v1/tool/heartbeat", json={}, headers=tool)
    claimed: list[dict] = []
    for _ in range(50):
        claimed = http.post("/api/v1/tool/links/claim", json={}, headers=tool).json()["data"]
        if claimed:
            break
        time.sleep(0.1)
    assert claimed and claimed[0]["password"] == PASSWORD
    http.put(
        f"/api/v1/tool/links/{claimed[0]['id']}/result",
        json={"status": "completed"},
        headers=tool,
    )


def _errors(http: httpx.Client, keys: tuple[str, str, str]) -> None:
    """Wrong kinds of key, a bad body holding a password, secrets in a query string."""
    assign_key, tool_key, admin_key = keys
    worker = {"X-API-Key": assign_key}
    assert http.get("/api/v1/worker/links", headers={"X-API-Key": tool_key}).status_code == 401
    wrong = {"X-API-Key": assign_key + "x"}
    assert http.get("/api/v1/admin/servers", headers=wrong).status_code == 401
    bad = {"links": [{"request_id": "nope", "service_type": "entity", "password": PASSWORD}]}
    assert http.post("/api/v1/worker/links/bulk", json=bad, headers=worker).status_code == 400
    query = f"/api/v1/worker/links?email={PASSWORD}&k={admin_key}"
    assert http.get(query, headers=worker).status_code == 200


def test_full_run_logs_no_key_or_password(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ASSIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'assign.db'}",
        "ASSIGN_DISPATCH_INTERVAL": "0.1",
        "ASSIGN_LOG_LEVEL": "DEBUG",
    }
    env.pop("ASSIGN_SECRET_KEY", None)
    keys = _keys(env)
    assign_key, tool_key, admin_key = keys

    port = procs.free_port()
    log_path = tmp_path / "serve.log"
    server = procs.Proc("serve", ["serve", "--port", str(port)], env, log_path)
    try:
        base = f"http://127.0.0.1:{port}"
        # a busy machine may take a while to start it
        assert procs.wait_ready(server, base, 60, path="/healthz"), server.log_tail()
        with httpx.Client(base_url=base, timeout=10) as http:
            admin, worker = {"X-API-Key": admin_key}, {"X-API-Key": assign_key}
            _run_a_link(http, admin, worker, {"X-API-Key": tool_key})
            _errors(http, keys)
    finally:
        server.stop(timeout=30)
    text = log_path.read_text()
    assert '"msg":"request"' in text  # the access log was written
    for secret in [*keys, PASSWORD]:
        assert secret not in text
