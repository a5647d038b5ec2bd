"""``assign explain LINK_ID`` on both databases: the same answer as the API, one line on failure."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from assign.cli import app
from tests.conftest import TEST_SECRET
from tests.factories import ADMIN, Factory, new_id

runner = CliRunner()


async def invoke(url: str, *args: str) -> object:
    env = {"ASSIGN_DATABASE_URL": url, "ASSIGN_SECRET_KEY": TEST_SECRET, "COLUMNS": "200"}
    # the command runs its own event loop: in a thread, beside the test's
    return await asyncio.to_thread(runner.invoke, app, ["explain", *args], env=env)


async def test_explain_command(factory: Factory, clean_database: str) -> None:
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    api = await factory.client.get(f"{ADMIN}/links/{link['id']}/explain", headers=factory.admin)
    result = await invoke(clean_database, link["id"], "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    assert json.loads(result.stdout) == api.json()["data"]  # type: ignore[attr-defined]
    assert json.loads(result.stdout)["reason"] == "no_server_for_service_type"  # type: ignore[attr-defined]

    result = await invoke(clean_database, link["id"])
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert "reason: no_server_for_service_type" in result.stdout  # type: ignore[attr-defined]

    for bad in (new_id(), "not-a-uuid"):
        result = await invoke(clean_database, bad)
        assert result.exit_code == 1  # type: ignore[attr-defined]
        assert len(result.stderr.strip().splitlines()) == 1  # type: ignore[attr-defined]
        assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
