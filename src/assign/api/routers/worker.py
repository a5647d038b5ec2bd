"""The worker API of the seed, under /api/v1/worker, for assign-server keys."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from assign.api import responses
from assign.api.deps import (
    IDS_PATTERN,
    Ctx,
    Limit,
    ServiceTypeQ,
    clamp_limit,
    parse_ids,
    parse_statuses,
    required_query,
    secured,
    status_query,
)
from assign.api.responses import JSON
from assign.api.routers import worker_links
from assign.api.routers.worker_params import (
    NotFound,
    minutes,
    service_type_of,
)
from assign.api.schemas import inputs
from assign.api.schemas import resources as out
from assign.api.schemas.common import ItemOut, ListOut, error_responses
from assign.domain.states import (
    AccountStatus,
    RequestStatus,
    ServerStatus,
)
from assign.errors import InvalidInput
from assign.services import catalog, requests, servers

router = APIRouter(
    prefix="/api/v1/worker",
    dependencies=secured,
    responses=error_responses(400, 401, 429, 503),
)

# --- servers -------------------------------------------------------------------------------


@router.get(
    "/servers",
    tags=["servers"],
    summary="Servers and their health",
    response_model=ListOut[out.ServerOut],
)
async def list_servers(
    ctx: Ctx,
    status: Annotated[str | None, status_query(ServerStatus)] = None,
    inactive_minutes: Annotated[float | None, minutes("no heartbeat for over N minutes")] = None,
) -> JSON:
    statuses = parse_statuses(status, ServerStatus)
    items = await servers.list_servers(
        ctx, statuses=statuses, inactive_minutes=inactive_minutes, limit=10_000
    )
    return responses.listing(items)


@router.get(
    "/servers/available",
    tags=["servers"],
    summary="Servers with a free slot",
    response_model=ListOut[out.ServerOut],
)
async def available_servers(
    ctx: Ctx,
    status: Annotated[str, status_query(ServerStatus)] = "online",
    service: Annotated[str | None, Query(description="server service, e.g. tool")] = None,
) -> JSON:
    statuses = parse_statuses(status, ServerStatus) or [ServerStatus.ONLINE.value]
    return responses.listing(
        await servers.list_available(ctx, statuses=statuses, service=service or None)
    )


@router.put(
    "/servers/{server_id}/status",
    tags=["servers"],
    summary="Set a server's status",
    response_model=ItemOut[out.ServerOut],
    responses=NotFound,
)
async def set_server_status(ctx: Ctx, server_id: uuid.UUID, body: inputs.ServerStatusIn) -> JSON:
    return responses.item(await servers.set_status(ctx, server_id=server_id, status=body.status))


# --- requests ------------------------------------------------------------------------------


@router.get(
    "/requests",
    tags=["requests"],
    summary="Requests to process",
    response_model=ListOut[out.RequestOut],
)
async def list_requests(
    ctx: Ctx,
    status: Annotated[str, status_query(RequestStatus)] = "pending,running",
    service_type: ServiceTypeQ = None,
    type_request: str | None = None,
    limit: Limit = 100,
) -> JSON:
    statuses = parse_statuses(status, RequestStatus) or ["pending", "running"]
    items = await requests.list_requests(
        ctx,
        statuses=statuses,
        service_type=service_type_of(service_type),
        type_request=type_request or None,
        limit=clamp_limit(limit),
    )
    return responses.listing(items)


@router.get(
    "/requests/completable",
    tags=["requests"],
    summary="Requests whose links are all done",
    response_model=ListOut[out.RequestOut],
)
async def completable_requests(
    ctx: Ctx,
    status: Annotated[str, status_query(RequestStatus)] = "running",
    type: ServiceTypeQ = None,
    all_links_completed: Annotated[
        bool | None, Query(description="no link still active (default)")
    ] = None,
    all_links_done: Annotated[bool | None, Query(description="same as all_links_completed")] = None,
    no_active_links: Annotated[
        bool, Query(description="no link pending, queued or running")
    ] = False,
    limit: Limit = 100,
) -> JSON:
    statuses = parse_statuses(status, RequestStatus) or ["running"]
    items = await requests.list_completable(
        ctx,
        statuses=statuses,
        service_type=service_type_of(type, "type"),
        no_active_links=no_active_links,
        limit=clamp_limit(limit),
    )
    return responses.listing(items)


@router.get(
    "/requests/{request_id}/links/count",
    tags=["requests"],
    summary="Count a request's links by status",
    response_model=out.LinkCountsOut,
    responses=NotFound,
)
async def count_request_links(ctx: Ctx, request_id: uuid.UUID) -> JSON:
    return responses.ok(**await requests.count_links(ctx, request_id=request_id))


@router.put(
    "/requests/{request_id}/status",
    tags=["requests"],
    summary="Set a request's status",
    response_model=ItemOut[out.RequestOut],
    responses=NotFound,
)
async def set_request_status(ctx: Ctx, request_id: uuid.UUID, body: inputs.RequestStatusIn) -> JSON:
    return responses.item(await requests.set_status(ctx, request_id=request_id, status=body.status))


@router.put(
    "/requests/{request_id}/connect",
    tags=["requests"],
    summary="Move a request to its connecting phase",
    response_model=out.ConnectOut,
    responses=NotFound,
)
async def connect_request(ctx: Ctx, request_id: uuid.UUID) -> JSON:
    result = await requests.connect(ctx, request_id=request_id)
    return responses.ok(**result)


@router.put(
    "/requests/{request_id}/complete",
    tags=["requests"],
    summary="Complete a request",
    response_model=out.CompleteOut,
    responses=NotFound,
)
async def complete_request(ctx: Ctx, request_id: uuid.UUID) -> JSON:
    await requests.complete(ctx, request_id=request_id)
    return responses.ok(updated=True)


# --- links (api/routers/worker_links.py) ----------------------------------------------------

router.include_router(worker_links.router)


# --- other resources -----------------------------------------------------------------------


@router.get("/sites", tags=["catalog"], summary="Sites", response_model=ListOut[out.SiteOut])
async def list_sites(
    ctx: Ctx,
    type: ServiceTypeQ = None,
    active: bool | None = None,
    ids: Annotated[
        str | None,
        Query(description="comma-separated site ids", json_schema_extra={"pattern": IDS_PATTERN}),
    ] = None,
    limit: Limit = 100,
) -> JSON:
    items = await catalog.list_sites(
        ctx,
        site_type=service_type_of(type, "type"),
        active=active,
        ids=parse_ids(ids, "ids"),
        limit=clamp_limit(limit),
    )
    return responses.listing(items)


@router.get(
    "/accounts",
    tags=["catalog"],
    summary="Posting accounts of a group (with passwords)",
    response_model=ListOut[out.AccountWithPasswordOut],
)
async def list_accounts(
    ctx: Ctx,
    group_id: Annotated[uuid.UUID | None, required_query("the group of the accounts")] = None,
    status: Annotated[str | None, status_query(AccountStatus)] = None,
    limit: Limit = 100,
) -> JSON:
    statuses = parse_statuses(status, AccountStatus)
    if group_id is None:  # it answers passwords: never of every group at once
        raise InvalidInput.field("group_id", "is required")
    items = await catalog.list_accounts(
        ctx,
        group_id=group_id,
        statuses=statuses,
        limit=clamp_limit(limit),
        with_password=True,
    )
    return responses.listing(items)


@router.get(
    "/settings", tags=["catalog"], summary="Settings of a group", response_model=out.SettingsOut
)
async def get_settings(
    ctx: Ctx, group: Annotated[str | None, required_query("settings group")] = None
) -> JSON:
    if not group:
        raise InvalidInput.field("group", "is required")
    return responses.ok(group=group, settings=await catalog.get_settings(ctx, group=group))
