"""Worker API: GET /sites, GET /accounts, GET /settings."""

from __future__ import annotations

from typing import Any

from tests.factories import ADMIN, WORKER, Factory, new_id


async def _admin_post(factory: Factory, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await factory.client.post(f"{ADMIN}{path}", json=body, headers=factory.admin)
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def _get(factory: Factory, path: str, **params: Any) -> Any:
    return await factory.client.get(f"{WORKER}{path}", params=params, headers=factory.worker)


async def _names(factory: Factory, path: str, **params: Any) -> list[str]:
    response = await _get(factory, path, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["total"] == len(body["data"])
    return [item["name"] for item in body["data"]]


async def test_sites_filters(factory: Factory) -> None:
    a = await _admin_post(factory, "/sites", {"name": "a.com", "type": "entity"})
    b = await _admin_post(factory, "/sites", {"name": "b.com", "type": "entity", "active": False})
    c = await _admin_post(
        factory, "/sites", {"name": "c.com", "type": "social", "config": {"captcha": True}}
    )
    assert set(a) == {"id", "name", "type", "active", "config", "created_at", "updated_at"}
    assert (a["active"], c["config"]) == (True, {"captcha": True})

    assert await _names(factory, "/sites") == ["a.com", "b.com", "c.com"]
    assert await _names(factory, "/sites", type="entity") == ["a.com", "b.com"]
    assert await _names(factory, "/sites", type="entity", active="true") == ["a.com"]
    assert await _names(factory, "/sites", active="false") == ["b.com"]
    assert await _names(factory, "/sites", limit=2) == ["a.com", "b.com"]
    assert await _names(factory, "/sites", ids=f"{c['id']},{b['id']}") == ["b.com", "c.com"]
    assert await _names(factory, "/sites", ids=f"{c['id']}, {new_id()}") == ["c.com"]
    response = await _get(factory, "/sites", ids=f"{a['id']},zzz")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "ids"
    response = await _get(factory, "/sites", type="video")
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "type"


async def test_accounts_return_password_to_assign_key(factory: Factory) -> None:
    group, other = new_id(), new_id()
    account = await _admin_post(
        factory,
        "/accounts",
        {"group_id": group, "email": "a@x.com", "username": "a", "password": "pw-a"},
    )
    assert "password" not in account and "password_enc" not in account
    await _admin_post(
        factory, "/accounts", {"group_id": group, "email": "b@x.com", "status": "banned"}
    )
    await _admin_post(
        factory, "/accounts", {"group_id": other, "email": "c@x.com", "password": "pw-c"}
    )

    response = await _get(factory, "/accounts", group_id=group)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    first, second = body["data"]
    assert first == {**account, "password": "pw-a"}
    assert (second["email"], second["status"], second["password"]) == ("b@x.com", "banned", None)

    response = await _get(factory, "/accounts", group_id=group, status="active")
    assert [a["email"] for a in response.json()["data"]] == ["a@x.com"]
    response = await _get(factory, "/accounts", status="active,banned")
    assert response.status_code == 400  # passwords of every group at once: never
    assert response.json()["details"] == [{"field": "group_id", "message": "is required"}]
    response = await _get(factory, "/accounts", group_id=group, status="gone")
    assert response.status_code == 400
    assert "active, inactive, banned" in response.json()["details"][0]["message"]


async def test_settings_by_group(factory: Factory) -> None:
    response = await _get(factory, "/settings", group="rate_limit")
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "group": "rate_limit",
        "settings": {"cooldown_minutes": "5", "max_posts_per_day": "50"},
    }
    response = await _get(factory, "/settings", group="nothing")
    assert response.status_code == 200
    assert response.json() == {"success": True, "group": "nothing", "settings": {}}
    for params in ({}, {"group": ""}):
        response = await _get(factory, "/settings", **params)
        assert response.status_code == 400
        assert response.json()["details"] == [{"field": "group", "message": "is required"}]
