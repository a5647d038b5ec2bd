"""Model-based test of links, servers and requests, driven through the real API.

A hypothesis state machine (``tests/model/machine.py`` and ``rules.py``) runs random sequences of
everything that moves a link — bulk create (some placed on a server, some onto a server in
maintenance, some batches invalid, some into a closed request), assign, claim, result, retry,
bulk retry, mark-final-failed, connect, complete, server status (maintenance included),
heartbeat, server deletion (with connect links and failed connect-phase links), request status
(closing and reopening), clock advances (with the stale listing) and dispatcher ticks — against
the in-process app (httpx over ASGI), and keeps the plain-Python model of ``tests/model/model.py``
(PRODUCT §4-§6 as §9 settles them). Every answer's status code is the model's (200 / 400 / 404 /
409), and after every step the app's links (status, phase, server, retries, URLs,
``completed_at``), each link's attempts (PRODUCT §11: as many as its claims, numbered from 1,
each with its phase, server, outcome and times, as the database's triggers wrote them; and
``tests/invariants.check_attempts``, with ``link_counts`` against the links), servers (status,
``active_tasks``, also against SQL), requests (status, ``created_links``), per-request link
counts, completable requests and per-account statistics (``today_count``, ``total_completed``,
``last_post_at`` across the connect phase) equal the model.

Sizes come from the hypothesis profile loaded by ``tests/conftest.py`` (``default``, or ``deep``
with ``ASSIGN_TEST_DEEP=1``): 0.3 of its examples (30 by default), each run 0.6 of its
stateful steps (30).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.conftest import _reset_postgres, examples, steps
from tests.factories import ADMIN, WORKER, Factory
from tests.model.machine import ALL_LINK_STATUSES, Entropy, MachineBase
from tests.model.rules import FleetRules, WorkerRules


class LinkMachine(WorkerRules, FleetRules):
    """Every rule, on the database of a subclass."""


def machine_settings() -> settings:
    """Read when a test runs: the profile is loaded by conftest, after this module's import."""
    return settings(
        max_examples=examples(0.3),
        stateful_step_count=steps(0.6),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --- the tests: one machine per database ---------------------------------------------------------


async def _status_of(factory: Factory, request: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = await factory.list_links(request_id=request["id"], status=ALL_LINK_STATUSES)
    return [(row["status"], row["server_id"]) for row in rows]


async def test_a_deleted_server_leaves_no_link_nobody_can_claim(factory: Factory) -> None:
    """Found by the model: links that could only go back to a deleted server became ``connect``
    links with no server — never claimed, keeping their request open for ever."""
    server, other = await factory.server(), await factory.server()
    first, second = await factory.request(), await factory.request()
    [profiled] = await factory.links(first, 1)
    await factory.run_link(profiled, server, status="completed", profile_url="https://p.test/1")
    [connecting] = await factory.links(second, 1)
    await factory.run_link(connecting, other, status="completed", profile_url="https://p.test/2")
    response = await factory.client.put(
        f"{WORKER}/requests/{second['id']}/connect", headers=factory.worker
    )
    assert response.json()["links_connect"] == 1
    assert [c["id"] for c in await factory.claim(other)] == [connecting["id"]]
    response = await factory.result(connecting["id"], other, status="failed")
    assert response.status_code == 200

    for gone in (server, other):
        response = await factory.client.delete(
            f"{ADMIN}/servers/{gone['id']}", headers=factory.admin
        )
        assert response.status_code == 200, response.text

    # the failed connect-phase link could only be retried back to its deleted server
    assert await _status_of(factory, second) == [("canceled", None)]
    # a completed profile whose server is gone cannot go through the connect step
    response = await factory.client.put(
        f"{WORKER}/requests/{first['id']}/connect", headers=factory.worker
    )
    assert (response.json()["links_connect"], response.json()["links_canceled"]) == (0, 1)
    assert await _status_of(factory, first) == [("canceled", None)]
    response = await factory.client.get(
        f"{WORKER}/requests/completable", params={"status": "connecting"}, headers=factory.worker
    )
    assert {r["id"] for r in response.json()["data"]} == {first["id"], second["id"]}


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a failure is shrunk, which takes a while
def test_links_model_sqlite(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "urandom", Entropy.urandom)
    copies = itertools.count()

    async def prepare(machine: MachineBase) -> str:
        path = tmp_path / f"example-{next(copies)}.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"

    machine = type("SQLiteLinkMachine", (LinkMachine,), {"prepare": prepare})
    run_state_machine_as_test(machine, settings=machine_settings())


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(1200)
def test_links_model_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "urandom", Entropy.urandom)

    async def prepare(machine: MachineBase) -> str:
        await _reset_postgres(pg_url)
        return pg_url

    machine = type("PostgresLinkMachine", (LinkMachine,), {"prepare": prepare})
    run_state_machine_as_test(machine, settings=machine_settings())
