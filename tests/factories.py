"""Small builders of test data, going through the public API like a client would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from assign.services import catalog, servers
from assign.services.context import Context

WORKER = "/api/v1/worker"
TOOL = "/api/v1/tool"
ADMIN = "/api/v1/admin"


@dataclass
class Factory:
    ctx: Context
    client: httpx.AsyncClient
    admin_key: str
    assign_key: str
    assign_server_id: str
    _count: int = field(default=0)

    @classmethod
    async def create(cls, ctx: Context, client: httpx.AsyncClient) -> Factory:
        admin_key = await catalog.create_admin_key(ctx, name="tests")
        assign = await servers.create_server(ctx, name="assign-1", service="assign")
        return cls(ctx, client, admin_key, assign["api_key"], str(assign["id"]))

    @property
    def admin(self) -> dict[str, str]:
        return {"X-API-Key": self.admin_key}

    @property
    def worker(self) -> dict[str, str]:
        return {"X-API-Key": self.assign_key}

    @staticmethod
    def tool(server: dict[str, Any]) -> dict[str, str]:
        return {"X-API-Key": server["api_key"]}

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self._count}"

    async def server(self, **values: Any) -> dict[str, Any]:
        """A tool server (3 slots unless told), with its ``api_key``."""
        body = {"name": self._name("tool"), "service": "tool", "max_threads": 3, **values}
        response = await self.client.post(f"{ADMIN}/servers", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    async def request(self, **values: Any) -> dict[str, Any]:
        body = {"service_type": "entity", "name": self._name("campaign"), **values}
        response = await self.client.post(f"{ADMIN}/requests", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        data.pop("eta")  # admin answers only: the request in the seed's shape, as workers see it
        return data

    async def site(self, **values: Any) -> str:
        """A new site's id."""
        body = {"name": self._name("site"), "type": "entity", **values}
        response = await self.client.post(f"{ADMIN}/sites", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"])

    async def links(
        self, request: dict[str, Any], n: int = 1, **values: Any
    ) -> list[dict[str, Any]]:
        """``n`` new links of ``request``; returns them as GET /links shows them."""
        email = values.pop("email", None)
        items = [
            {
                "request_id": request["id"],
                "service_type": request["service_type"],
                "site_name": f"site{i}.example",
                "email": email or f"user{i}@example.com",
                "password": "s3cret-pass",
                **values,
            }
            for i in range(n)
        ]
        response = await self.client.post(
            f"{WORKER}/links/bulk", json={"links": items}, headers=self.worker
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True, "created": n}
        return await self.list_links(request_id=request["id"], status="pending,queued")

    async def list_links(self, **params: Any) -> list[dict[str, Any]]:
        params.setdefault("limit", 1000)
        response = await self.client.get(f"{WORKER}/links", params=params, headers=self.worker)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    async def get_server(self, server_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{ADMIN}/servers/{server_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    async def get_request(self, request_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{ADMIN}/requests/{request_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        data.pop("eta")  # as ``request``: the seed's shape
        return data

    async def get_link(self, link_id: str, server: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.get(f"{TOOL}/links/{link_id}", headers=self.tool(server))
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    async def assign(self, link_id: str, server: dict[str, Any]) -> httpx.Response:
        return await self.client.put(
            f"{WORKER}/links/{link_id}/assign",
            json={"server_id": server["id"]},
            headers=self.worker,
        )

    async def claim(self, server: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
        response = await self.client.post(
            f"{TOOL}/links/claim", json={"limit": limit}, headers=self.tool(server)
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    async def result(self, link_id: str, server: dict[str, Any], **body: Any) -> httpx.Response:
        body.setdefault("status", "completed")
        return await self.client.put(
            f"{TOOL}/links/{link_id}/result", json=body, headers=self.tool(server)
        )

    async def run_link(
        self, link: dict[str, Any], server: dict[str, Any], **result: Any
    ) -> dict[str, Any]:
        """Assign, claim and report one link; the link after its result."""
        assert (await self.assign(link["id"], server)).status_code == 200
        claimed = await self.claim(server, limit=1000)
        assert link["id"] in {c["id"] for c in claimed}
        response = await self.result(link["id"], server, **result)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]


def new_id() -> str:
    return str(uuid.uuid4())
