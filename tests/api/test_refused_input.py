"""PRODUCT §9 "Input that is refused", on both databases."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_status_codes import assert_error
from tests.factories import ADMIN, TOOL, WORKER, Factory

DEEP = 65


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("where", ["admin", "bulk", "result"])
async def test_a_body_nested_deeper_than_64_levels_is_400_saying_so(
    factory: Factory, where: str
) -> None:
    server = await factory.server()
    request = await factory.request()
    urls = {
        "admin": (f"{ADMIN}/servers", factory.admin, b'{"name":"n","service":"tool","x":%s}'),
        "bulk": (f"{WORKER}/links/bulk", factory.worker, b'{"links":%s}'),
        "result": (f"{TOOL}/links/{uuid.uuid4()}/result", factory.tool(server),
                   b'{"status":"failed","details":{"x":%s}}'),
    }  # fmt: skip
    url, headers, template = urls[where]
    for depth in (DEEP, 5000):
        response = await factory.client.request(
            "PUT" if where == "result" else "POST",
            url,
            content=template % nested(depth),
            headers={**headers, "Content-Type": "application/json"},
        )
        body = assert_error(response, 400)
        assert "deeper than 64 levels" in body["error"]
    # 64 levels in all is still read (and brackets inside strings do not count)
    fine = b'{"links":[{"request_id":"%s","service_type":"entity","about":"%s"}]}' % (
        request["id"].encode(),
        b"[" * 100,
    )
    response = await factory.client.post(
        f"{WORKER}/links/bulk",
        content=fine,
        headers={**factory.worker, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_json_route_without_a_json_content_type_is_400(
    factory: Factory, content_type: str | None
) -> None:
    request = await factory.request()
    cases = [
        ("POST", f"{ADMIN}/requests", factory.admin, b'{"service_type":"entity","name":"n"}'),
        ("POST", f"{WORKER}/links/bulk", factory.worker,
         b'{"links":[{"request_id":"%s","service_type":"entity"}]}' % request["id"].encode()),
        ("PUT", f"{WORKER}/requests/{request['id']}/status", factory.worker, b'{"status":"running"}'),
    ]  # fmt: skip
    for method, url, headers, content in cases:
        extra = {"Content-Type": content_type} if content_type else {}
        response = await factory.client.request(
            method, url, content=content, headers={**headers, **extra}
        )
        body = assert_error(response, 400)
        assert "application/json" in body["error"], (url, body)
    # no body at all where one is required: no Content-Type either
    response = await factory.client.post(f"{ADMIN}/requests", headers=factory.admin)
    assert "application/json" in assert_error(response, 400)["error"]


async def test_details_over_64_kib_are_400_naming_the_field(factory: Factory) -> None:
    server = await factory.server()
    request = await factory.request()
    big = {"blob": "x" * (64 * 1024)}
    for details in (big, {"nested": [big]}):  # a flat one (fast reader) and a nested one
        items = [{"request_id": request["id"], "service_type": "entity"} for _ in range(3)]
        items[1]["details"] = details
        response = await factory.client.post(
            f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
        )
        body = assert_error(response, 400)
        assert [d["field"] for d in body["details"]] == ["links[1].details"]
    [link] = await factory.links(request, 1, server_id=server["id"])
    await factory.claim(server)
    body = assert_error(await factory.result(link["id"], server, details=big), 400)
    assert [d["field"] for d in body["details"]] == ["details"]
    assert (await factory.result(link["id"], server, details={"ok": 1})).status_code == 200


async def test_bulk_with_an_unknown_site_is_400_naming_it(factory: Factory) -> None:
    request = await factory.request()
    site = await factory.site()
    items = [
        {"request_id": request["id"], "service_type": "entity", "site_id": site},
        {"request_id": request["id"], "service_type": "entity", "site_id": str(uuid.uuid4())},
    ]
    response = await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )
    body = assert_error(response, 400)
    assert body["details"] == [{"field": "links[1].site_id", "message": "site not found"}]
    assert await factory.list_links(request_id=request["id"]) == []


async def _account(factory: Factory, group: str, email: str, status: int = 201) -> None:
    response = await factory.client.post(
        f"{ADMIN}/accounts",
        json={"group_id": group, "email": email, "password": "pw"},
        headers=factory.admin,
    )
    assert response.status_code == status, response.text


async def test_worker_accounts_need_a_group_and_default_to_100(factory: Factory) -> None:
    group, other = str(uuid.uuid4()), str(uuid.uuid4())
    for i in range(101):
        await _account(factory, group, f"a{i:03}@x.test")
    await _account(factory, other, "b@x.test")
    response = await factory.client.get(f"{WORKER}/accounts", headers=factory.worker)
    body = assert_error(response, 400)
    assert body["details"] == [{"field": "group_id", "message": "is required"}]
    response = await factory.client.get(
        f"{WORKER}/accounts", params={"group_id": group}, headers=factory.worker
    )
    assert response.json()["total"] == 100
    assert all(a["password"] == "pw" and a["group_id"] == group for a in response.json()["data"])
    # the admin API: every group, never a password
    response = await factory.client.get(
        f"{ADMIN}/accounts", params={"limit": 1000}, headers=factory.admin
    )
    assert response.json()["total"] == 102
    assert all("password" not in a for a in response.json()["data"])


async def test_accounts_are_unique_by_group_and_lower_cased_email(factory: Factory) -> None:
    group = str(uuid.uuid4())
    await _account(factory, group, "Same@X.test")
    await _account(factory, group, "same@x.TEST", status=409)
    await _account(factory, str(uuid.uuid4()), "same@x.test")  # another group: fine
    await _account(factory, group, "other@x.test")
    listed = await factory.client.get(
        f"{ADMIN}/accounts", params={"group_id": group}, headers=factory.admin
    )
    other = next(a for a in listed.json()["data"] if a["email"] == "other@x.test")
    response = await factory.client.patch(
        f"{ADMIN}/accounts/{other['id']}", json={"email": "SAME@x.test"}, headers=factory.admin
    )
    assert_error(response, 409)


@pytest.mark.parametrize("price", [100, 99.5, 0, -3, 1e300])
async def test_numbers_read_back_as_they_were_created(factory: Factory, price: float) -> None:
    created = await factory.request(auction_price=price, target=7, config={"n": 100, "f": 2.5})
    got = await factory.get_request(created["id"])
    listed = await factory.client.get(
        f"{WORKER}/requests", params={"status": "pending"}, headers=factory.worker
    )
    [item] = [r for r in listed.json()["data"] if r["id"] == created["id"]]
    for answer in (created, got, item):
        assert answer["auction_price"] == price
        assert type(answer["auction_price"]) is type(price)
        assert (answer["target"], answer["config"]) == (7, {"n": 100, "f": 2.5})
        assert type(answer["config"]["n"]) is int and type(answer["config"]["f"]) is float
