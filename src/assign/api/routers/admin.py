"""The admin API, under /api/v1/admin: create and manage everything the worker API reads."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from assign.api import responses
from assign.api.deps import (
    Ctx,
    Limit,
    ServiceTypeQ,
    clamp_limit,
    parse_choice,
    parse_statuses,
    secured,
    status_query,
)
from assign.api.idempotency import Once
from assign.api.responses import JSON
from assign.api.schemas import history as history_out
from assign.api.schemas import inputs
from assign.api.schemas import resources as out
from assign.api.schemas.common import ItemOut, ListOut, error_responses
from assign.domain.states import SERVICE_TYPES, AccountStatus, RequestStatus, ServerStatus
from assign.services import catalog, eta, servers, stats

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=secured,
    responses=error_responses(400, 401, 429, 503),
)
NotFound = error_responses(404)
#: a settings group name, as stored (at most 100 characters)
Group = Annotated[str, Path(min_length=1, max_length=100)]

#: fields a PATCH may set to null; any other null is ignored
NULLABLE = {"ip", "service_types", "website", "auction_price", "target", "config", "data",
            "folder_urls", "username", "password"}  # fmt: skip


def _changes(body: BaseModel) -> dict[str, Any]:
    return {
        k: v
        for k, v in body.model_dump(exclude_unset=True).items()
        if v is not None or k in NULLABLE
    }


# --- servers -------------------------------------------------------------------------------


@router.post(
    "/servers",
    status_code=201,
    summary="Create a server and its API key (shown once)",
    response_model=ItemOut[out.ServerWithKeyOut],
)
async def create_server(body: inputs.ServerCreateIn, once: Once) -> JSON:
    return await once.created(lambda ctx: servers.create_server(ctx, **body.model_dump()))


@router.get("/servers", summary="All servers", response_model=ListOut[out.ServerOut])
async def list_servers(
    ctx: Ctx,
    status: Annotated[str | None, status_query(ServerStatus)] = None,
    service: str | None = None,
) -> JSON:
    items = await servers.list_servers(
        ctx,
        statuses=parse_statuses(status, ServerStatus),
        inactive_minutes=None,
        service=service or None,
        limit=10_000,
    )
    return responses.listing(items)


@router.get(
    "/servers/{server_id}",
    summary="One server",
    response_model=ItemOut[out.ServerOut],
    responses=NotFound,
)
async def get_server(ctx: Ctx, server_id: uuid.UUID) -> JSON:
    return responses.item(await servers.get_server(ctx, server_id=server_id))


@router.patch(
    "/servers/{server_id}",
    summary="Change a server",
    response_model=ItemOut[out.ServerOut],
    responses=NotFound,
)
async def update_server(ctx: Ctx, server_id: uuid.UUID, body: inputs.ServerPatchIn) -> JSON:
    return responses.item(
        await servers.update_server(ctx, server_id=server_id, changes=_changes(body))
    )


@router.delete(
    "/servers/{server_id}",
    summary="Delete a server with no work on it",
    response_model=out.CompleteOut,
    responses=error_responses(404, 409),
)
async def delete_server(ctx: Ctx, server_id: uuid.UUID) -> JSON:
    await servers.delete_server(ctx, server_id=server_id)
    return responses.ok(updated=True)


# --- requests ------------------------------------------------------------------------------


@router.post(
    "/requests",
    status_code=201,
    summary="Create a request",
    response_model=ItemOut[history_out.RequestWithEtaOut],
)
async def create_request(body: inputs.RequestCreateIn, once: Once) -> JSON:
    return await once.created(lambda ctx: eta.create_request(ctx, values=body.model_dump()))


@router.get("/requests", summary="Requests", response_model=ListOut[history_out.RequestWithEtaOut])
async def list_requests(
    ctx: Ctx,
    status: Annotated[str | None, status_query(RequestStatus)] = None,
    service_type: ServiceTypeQ = None,
    limit: Limit = 100,
) -> JSON:
    items = await eta.list_requests(
        ctx,
        statuses=parse_statuses(status, RequestStatus) or [s.value for s in RequestStatus],
        service_type=parse_choice(service_type, SERVICE_TYPES, "service_type"),
        limit=clamp_limit(limit),
    )
    return responses.listing(items)


@router.get(
    "/requests/{request_id}",
    summary="One request, with its ETA",
    response_model=ItemOut[history_out.RequestWithEtaOut],
    responses=NotFound,
)
async def get_request(ctx: Ctx, request_id: uuid.UUID) -> JSON:
    return responses.item(await eta.get_request(ctx, request_id=request_id))


@router.patch(
    "/requests/{request_id}",
    summary="Change a request",
    response_model=ItemOut[history_out.RequestWithEtaOut],
    responses=NotFound,
)
async def update_request(ctx: Ctx, request_id: uuid.UUID, body: inputs.RequestPatchIn) -> JSON:
    return responses.item(
        await eta.update_request(ctx, request_id=request_id, changes=_changes(body))
    )


# --- sites ---------------------------------------------------------------------------------


@router.post(
    "/sites", status_code=201, summary="Create a site", response_model=ItemOut[out.SiteOut]
)
async def create_site(body: inputs.SiteCreateIn, once: Once) -> JSON:
    return await once.created(lambda ctx: catalog.create_site(ctx, values=body.model_dump()))


@router.get("/sites", summary="Sites", response_model=ListOut[out.SiteOut])
async def list_sites(
    ctx: Ctx, type: ServiceTypeQ = None, active: bool | None = None, limit: Limit = 100
) -> JSON:
    items = await catalog.list_sites(
        ctx,
        site_type=parse_choice(type, SERVICE_TYPES, "type"),
        active=active,
        ids=None,
        limit=clamp_limit(limit),
    )
    return responses.listing(items)


@router.patch(
    "/sites/{site_id}",
    summary="Change a site",
    response_model=ItemOut[out.SiteOut],
    responses=NotFound,
)
async def update_site(ctx: Ctx, site_id: uuid.UUID, body: inputs.SitePatchIn) -> JSON:
    return responses.item(await catalog.update_site(ctx, site_id=site_id, changes=_changes(body)))


@router.delete(
    "/sites/{site_id}", summary="Delete a site", response_model=out.CompleteOut, responses=NotFound
)
async def delete_site(ctx: Ctx, site_id: uuid.UUID) -> JSON:
    await catalog.delete_site(ctx, site_id=site_id)
    return responses.ok(updated=True)


# --- accounts ------------------------------------------------------------------------------


@router.post(
    "/accounts",
    status_code=201,
    summary="Create a posting account",
    response_model=ItemOut[out.AccountOut],
)
async def create_account(body: inputs.AccountCreateIn, once: Once) -> JSON:
    return await once.created(lambda ctx: catalog.create_account(ctx, values=body.model_dump()))


@router.get(
    "/accounts", summary="Posting accounts (no passwords)", response_model=ListOut[out.AccountOut]
)
async def list_accounts(
    ctx: Ctx,
    group_id: uuid.UUID | None = None,
    status: Annotated[str | None, status_query(AccountStatus)] = None,
    limit: Limit = 100,
) -> JSON:
    items = await catalog.list_accounts(
        ctx,
        group_id=group_id,
        statuses=parse_statuses(status, AccountStatus),
        limit=clamp_limit(limit),
        with_password=False,
    )
    return responses.listing(items)


@router.patch(
    "/accounts/{account_id}",
    summary="Change a posting account",
    response_model=ItemOut[out.AccountOut],
    responses=NotFound,
)
async def update_account(ctx: Ctx, account_id: uuid.UUID, body: inputs.AccountPatchIn) -> JSON:
    return responses.item(
        await catalog.update_account(ctx, account_id=account_id, changes=_changes(body))
    )


@router.delete(
    "/accounts/{account_id}",
    summary="Delete a posting account",
    response_model=out.CompleteOut,
    responses=NotFound,
)
async def delete_account(ctx: Ctx, account_id: uuid.UUID) -> JSON:
    await catalog.delete_account(ctx, account_id=account_id)
    return responses.ok(updated=True)


# --- settings and stats --------------------------------------------------------------------


class AllSettingsOut(BaseModel):
    success: bool = True
    data: dict[str, dict[str, str]]


@router.get("/settings", summary="Every settings group", response_model=AllSettingsOut)
async def all_settings(ctx: Ctx) -> JSON:
    return responses.item(await catalog.all_settings(ctx))


@router.get("/settings/{group}", summary="One settings group", response_model=out.SettingsOut)
async def get_settings(ctx: Ctx, group: Group) -> JSON:
    return responses.ok(group=group, settings=await catalog.get_settings(ctx, group=group))


@router.put(
    "/settings/{group}", summary="Merge keys into a settings group", response_model=out.SettingsOut
)
async def put_settings(ctx: Ctx, group: Group, body: inputs.SettingsIn) -> JSON:
    merged = await catalog.put_settings(ctx, group=group, values=body.stored())
    return responses.ok(group=group, settings=merged)


class StatsOut(BaseModel):
    success: bool = True
    links: dict[str, int]
    requests: dict[str, int]
    servers: dict[str, int]


@router.get(
    "/stats", summary="Counts of links, requests and servers by state", response_model=StatsOut
)
async def get_stats(ctx: Ctx) -> JSON:
    return responses.ok(**await stats.overview(ctx))
