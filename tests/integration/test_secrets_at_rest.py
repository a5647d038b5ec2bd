"""No API key and no password is stored in clear: a full dump of the database shows none.

The dump is ``pg_dump`` on PostgreSQL and ``iterdump`` on SQLite; bytes are searched both as
text and as the hex form both dumps use for binary columns.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from typing import Any

import pytest

from assign.security import keys
from assign.services.context import Context
from tests.factories import ADMIN, TOOL, WORKER, Factory, new_id

LINK_PASSWORD = "link-Pa55w0rd-in-clear?"
ACCOUNT_PASSWORD = "account-S3cret-in-clear!"
NEW_ACCOUNT_PASSWORD = "rotated-S3cret-in-clear#"


def _dump_sqlite(ctx: Context) -> str:
    path = ctx.settings.sqlite_path
    assert path is not None
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def _dump_postgres(ctx: Context) -> str:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    url = ctx.settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    done = subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _dump(ctx: Context) -> str:
    dump = _dump_sqlite if ctx.settings.uses_sqlite_file else _dump_postgres
    return await asyncio.to_thread(dump, ctx)


def _forms(secret: str) -> list[str]:
    """How a secret would show in a dump if it were stored as text or as bytes."""
    raw = secret.encode()
    return [secret, raw.hex(), raw.hex().upper()]


async def _post(factory: Factory, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = factory.worker if path.startswith(WORKER) else factory.admin
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    response = await factory.client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _account_with_a_new_password(factory: Factory) -> None:
    """A posting account created, then given a new password."""
    group = new_id()
    account = (
        await _post(
            factory,
            f"{ADMIN}/accounts",
            {"group_id": group, "email": "acct@example.com", "password": ACCOUNT_PASSWORD},
            key="account-1",
        )
    )["data"]
    response = await factory.client.patch(
        f"{ADMIN}/accounts/{account['id']}",
        json={"password": NEW_ACCOUNT_PASSWORD},
        headers=factory.admin,
    )
    assert response.status_code == 200
    response = await factory.client.get(
        f"{WORKER}/accounts", params={"group_id": group}, headers=factory.worker
    )
    assert response.json()["data"][0]["password"] == NEW_ACCOUNT_PASSWORD


async def test_dump_holds_no_key_or_password(factory: Factory, ctx: Context) -> None:
    # servers and their keys, with and without an Idempotency-Key (whose answer holds the key)
    plain = await factory.server()
    body = {"name": "tool-idem", "service": "tool"}
    idem = (await _post(factory, f"{ADMIN}/servers", body, key="create-tool-1"))["data"]
    assign_server = await factory.server(service="assign")
    server_keys = [plain["api_key"], idem["api_key"], assign_server["api_key"]]
    assert all(k.startswith("asg_") for k in server_keys)

    # links with passwords: created, claimed (decrypted for the server), completed
    request = await factory.request()
    items = [
        {
            "request_id": request["id"],
            "service_type": "entity",
            "email": f"poster{i}@example.com",
            "password": LINK_PASSWORD,
        }
        for i in range(3)
    ]
    await _post(factory, f"{WORKER}/links/bulk", {"links": items})
    await _post(factory, f"{WORKER}/links/bulk", {"links": items[:1]}, key="links-1")
    links = await factory.list_links(request_id=request["id"])
    assert (await factory.assign(links[0]["id"], plain)).status_code == 200
    claimed = await factory.claim(plain)
    assert [c["password"] for c in claimed] == [LINK_PASSWORD]
    assert (await factory.result(links[0]["id"], plain, profile_url="https://p")).status_code == 200

    await _account_with_a_new_password(factory)
    # keys in use on every surface
    assert (await factory.client.post(f"{TOOL}/heartbeat", headers=factory.tool(idem))).is_success

    dump = await _dump(ctx)

    # the dump really holds the data: emails, and each key's digest
    assert "poster0@example.com" in dump and "acct@example.com" in dump
    for key in [*server_keys, factory.assign_key, factory.admin_key]:
        assert keys.hash_key(key) in dump
    assert "create-tool-1" in dump  # the idempotency record is there too

    secrets = [
        *server_keys,
        factory.assign_key,
        factory.admin_key,
        LINK_PASSWORD,
        ACCOUNT_PASSWORD,
        NEW_ACCOUNT_PASSWORD,
    ]
    for secret in secrets:
        for form in _forms(secret):
            assert form not in dump, f"{secret!r} is stored in clear"
    # nor the random part of a key alone
    for key in [*server_keys, factory.assign_key, factory.admin_key]:
        assert key.removeprefix("asg_") not in dump
