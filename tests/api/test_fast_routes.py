"""The tool server's per-link calls (result, claim) taken by ``api.fast_routes`` when they are
the ordinary case, and handed on to the FastAPI routes otherwise: the same answers either way.
Every other test of these calls goes through them too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assign.api.fast_routes import FastRoute
from assign.app import create_app
from assign.services.context import Context
from tests.factories import TOOL, Factory, new_id


@pytest.fixture
async def fast(ctx: Context) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, FastRoute]]]:
    """A client of an application of its own, and its fast routes by template."""
    app = create_app(context=ctx, migrate=False)
    routes = {r.path: r for r in app.router.routes if isinstance(r, FastRoute)}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assign.test") as http:
        yield http, routes


RESULT = "/api/v1/tool/links/{link_id}/result"
CLAIM = "/api/v1/tool/links/claim"


async def _running(factory: Factory, server: dict[str, Any]) -> dict[str, Any]:
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200
    assert [c["id"] for c in await factory.claim(server)] == [link["id"]]
    return link


async def test_ordinary_calls_are_taken_and_answer_as_documented(
    factory: Factory, fast: tuple[httpx.AsyncClient, dict[str, FastRoute]]
) -> None:
    http, routes = fast
    server = await factory.server(max_threads=5)
    headers = factory.tool(server)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    assert (await factory.assign(link["id"], server)).status_code == 200
    for body in ({"limit": 5}, None):  # a body, and none
        claimed = await http.post(f"{TOOL}/links/claim", json=body, headers=headers)
        assert claimed.status_code == 200, claimed.text
    assert routes[CLAIM].taken == 2 and routes[CLAIM].declined == 0
    nothing_left = await http.post(f"{TOOL}/links/claim", headers=headers)
    assert nothing_left.json()["data"] == []
    answer = await http.put(
        f"{TOOL}/links/{link['id']}/result",
        json={"status": "completed", "profile_url": "https://p.example/u/1"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert (data["id"], data["status"], data["profile_url"]) == (
        link["id"],
        "completed",
        "https://p.example/u/1",
    )
    assert routes[RESULT].taken == 1 and routes[RESULT].declined == 0
    # a link that is not running, and one that does not exist: the route's own errors
    again = await http.put(
        f"{TOOL}/links/{link['id']}/result", json={"status": "completed"}, headers=headers
    )
    missing = await http.put(
        f"{TOOL}/links/{new_id()}/result", json={"status": "failed"}, headers=headers
    )
    assert (again.status_code, missing.status_code) == (409, 404)
    assert routes[RESULT].taken == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "failed", "error": 5}, "error"),
        ({"status": "completed", "details": [1]}, "details"),
        ({"profile_url": "https://p.example/u/1"}, "status"),
        ([{"status": "completed"}], None),
        (None, None),
    ],
)
async def test_unusual_results_go_to_the_route_and_answer_as_it_does(
    factory: Factory,
    fast: tuple[httpx.AsyncClient, dict[str, FastRoute]],
    body: Any,
    field: str | None,
) -> None:
    http, routes = fast
    server = await factory.server()
    link = await _running(factory, server)
    url = f"{TOOL}/links/{link['id']}/result"
    answer = await http.put(url, json=body, headers=factory.tool(server))
    # the application of the other tests has no part in this: it answers through its routes
    reference = await factory.client.put(url, json=body, headers=factory.tool(server))
    assert answer.status_code == reference.status_code == 400
    assert answer.json() == reference.json()
    if field is not None:
        assert field in answer.text
    assert routes[RESULT].taken == 0 and routes[RESULT].declined == 1


async def test_query_strings_nul_headers_and_bad_claims_are_left_to_the_routes(
    factory: Factory, fast: tuple[httpx.AsyncClient, dict[str, FastRoute]]
) -> None:
    http, routes = fast
    server = await factory.server()
    headers = factory.tool(server)
    link = await _running(factory, server)
    url = f"{TOOL}/links/{link['id']}/result"
    queried = await http.put(url + "?x=1", json={"status": "completed"}, headers=headers)
    nul = await http.put(
        url, json={"status": "completed"}, headers={**headers, "X-Trace": "a\x00b"}
    )
    assert nul.status_code == 400 and "NUL" in nul.text
    assert queried.status_code == 200  # the route ignores an unknown query parameter
    assert routes[RESULT].taken == 0 and routes[RESULT].declined == 0  # never matched
    too_long = await http.post(
        f"{TOOL}/links/claim", json={"limit": 5, "wait_seconds": 31}, headers=headers
    )
    assert too_long.status_code == 400 and "wait_seconds" in too_long.text
    assert routes[CLAIM].declined == 1 and routes[CLAIM].taken == 0
