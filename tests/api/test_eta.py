"""``eta`` of open requests in admin answers: remaining links over the recent rate, within the
accounts' rate limits; never in worker API answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from assign.clock import FrozenClock
from assign.services import console
from assign.services.context import Context
from tests.api.test_explain import rate_limit
from tests.factories import ADMIN, WORKER, Factory


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def admin_request(factory: Factory, request: dict[str, Any]) -> dict[str, Any]:
    response = await factory.client.get(f"{ADMIN}/requests/{request['id']}", headers=factory.admin)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def test_eta_from_recent_rate_and_account_limits(
    clock: FrozenClock, factory: Factory
) -> None:
    await rate_limit(factory, per_day=100_000, cooldown=0)
    server = await factory.server(max_threads=10)
    request = await factory.request()
    empty = await factory.request()
    assert (await admin_request(factory, empty))["eta"] is None  # no link: nothing to estimate
    links = await factory.links(request, 10, email="one@example.com")
    assert (await admin_request(factory, request))["eta"] is None  # nothing completed yet

    for link in links[:3]:
        await factory.run_link(link, server)
    now = clock.now()
    # 3 completions in the 15-minute window: 0.2 a minute, 7 left -> 35 minutes
    assert at((await admin_request(factory, request))["eta"]) == now + timedelta(minutes=35)

    # one account with a 10-minute cooldown can take 0.1 a minute: 70 minutes
    await rate_limit(factory, per_day=100_000, cooldown=10)
    assert at((await admin_request(factory, request))["eta"]) == now + timedelta(minutes=70)

    response = await factory.client.get(
        f"{ADMIN}/requests", params={"status": "pending,running"}, headers=factory.admin
    )
    listed = {r["id"]: r["eta"] for r in response.json()["data"]}
    assert at(listed[request["id"]]) == now + timedelta(minutes=70)
    assert listed[empty["id"]] is None

    # the completions leave the window: no recent rate, no estimate
    clock.advance(minutes=16)
    assert (await admin_request(factory, request))["eta"] is None

    # worker answers keep the seed's shape
    response = await factory.client.get(f"{WORKER}/requests", headers=factory.worker)
    assert all("eta" not in r for r in response.json()["data"])


async def test_closed_request_has_no_eta(factory: Factory) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server)
    response = await factory.client.put(
        f"{WORKER}/requests/{request['id']}/complete", headers=factory.worker
    )
    assert response.status_code == 200
    assert (await admin_request(factory, request))["eta"] is None


async def test_ceiling_from_the_accounts_of_the_links_left(
    clock: FrozenClock, factory: Factory
) -> None:
    """The accounts counted are those of the links still to be done, and links without an
    account are not held by them: finished links and their accounts do not count."""
    await rate_limit(factory, per_day=100_000, cooldown=20)  # 0.05 a minute an account
    server = await factory.server(max_threads=10)
    request = await factory.request()
    for link in await factory.links(request, 3):  # three other accounts, all done
        await factory.run_link(link, server)
    await factory.links(request, 2, email="one@example.com")
    response = await factory.client.post(
        f"{WORKER}/links/bulk",
        json={"links": [{"request_id": request["id"], "service_type": request["service_type"],
                         "site_name": f"free{i}.example"} for i in range(2)]},
        headers=factory.worker,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    # 3 completions in 15 minutes: 0.2 a minute; one account for half the 4 links left:
    # 0.05 / 0.5 = 0.1 a minute -> 40 minutes (all four accounts: 20; no share: 80)
    assert at((await admin_request(factory, request))["eta"]) == clock.now() + timedelta(minutes=40)


async def test_open_request_with_nothing_left_is_due_now(
    clock: FrozenClock, factory: Factory
) -> None:
    server = await factory.server(max_threads=10)
    request = await factory.request()
    (link,) = await factory.links(request, 1)
    await factory.run_link(link, server)
    clock.advance(minutes=30)  # long after its last completion: nothing is left either way
    assert at((await admin_request(factory, request))["eta"]) == clock.now()


async def test_requests_page_shows_the_eta_of_now(
    ctx: Context, clock: FrozenClock, factory: Factory
) -> None:
    """The console's Requests page estimates on every view, as the admin API does."""
    await rate_limit(factory, per_day=100_000, cooldown=0)
    server = await factory.server(max_threads=10)
    request = await factory.request()
    links = await factory.links(request, 4)

    async def shown() -> Any:
        items, _ = await console.requests_page(
            ctx, statuses=[], service_type=None, name=None, after=None, limit=50
        )
        (item,) = [i for i in items if str(i["id"]) == request["id"]]
        answered = (await admin_request(factory, request))["eta"]
        assert item["eta"] == (answered and at(answered))  # the admin API's
        return item["eta"]

    assert await shown() is None  # nothing completed yet
    await factory.run_link(links[0], server)
    # 1 completion in 15 minutes, 3 left: 45 minutes, at once (no estimate kept from before)
    assert await shown() == clock.now() + timedelta(minutes=45)
