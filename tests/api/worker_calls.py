"""Calls of the worker API that the worker-link and worker-request tests share."""

from __future__ import annotations

from typing import Any

from tests.factories import WORKER, Factory

LINK_KEYS = {
    "id", "request_id", "service_type", "server_id", "site_id", "site_name", "email", "username",
    "about", "status", "phase", "retry_count", "max_retries", "error", "profile_url", "post_url",
    "details", "assigned_at", "started_at", "completed_at", "created_at", "updated_at",
}  # fmt: skip


async def get(factory: Factory, path: str, **params: Any) -> Any:
    return await factory.client.get(f"{WORKER}{path}", params=params, headers=factory.worker)


async def put(factory: Factory, path: str, json: Any = None) -> Any:
    return await factory.client.put(f"{WORKER}{path}", json=json, headers=factory.worker)


async def bulk(factory: Factory, items: list[dict[str, Any]]) -> Any:
    return await factory.client.post(
        f"{WORKER}/links/bulk", json={"links": items}, headers=factory.worker
    )


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def failed(
    factory: Factory, request: dict[str, Any], server: dict[str, Any], **values: Any
) -> dict[str, Any]:
    (link,) = await factory.links(request, 1, **values)
    return await factory.run_link(link, server, status="failed", error="site down")
