"""The worker API of the seed, under /api/v1/worker, for assign-server keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from assign.api import bulk_body, idempotency, responses
from assign.api.deps import (
    IDS_PATTERN,
    LIMIT_QUERY_EXTRA,
    MAX_MINUTES,
    Caller,
    Ctx,
    choice_query,
    clamp_limit,
    parse_choice,
    parse_ids,
    parse_statuses,
    required_query,
    secured,
    status_query,
)
from assign.api.idempotency import IdempotencyKey
from assign.api.responses import JSON
from assign.api.schemas import inputs
from assign.api.schemas import resources as out
from assign.api.schemas.common import ItemOut, ListOut, UpdatedOut, error_responses
from assign.domain.states import (
    SERVICE_TYPES,
    AccountStatus,
    LinkStatus,
    RequestStatus,
    ServerStatus,
)
from assign.errors import InvalidInput
from assign.services import catalog, links, requests, servers

router = APIRouter(
    prefix="/api/v1/worker",
    dependencies=secured,
    responses=error_responses(400, 401, 429, 503),
)
NotFound = error_responses(404)
Conflict = error_responses(404, 409)
Limit = Annotated[
    int,
    Query(
        description="default 100, at least 1, at most 1000 (larger is clamped)",
        json_schema_extra=LIMIT_QUERY_EXTRA,
    ),
]
ServiceTypeQ = Annotated[str | None, choice_query(SERVICE_TYPES)]


def _minutes(description: str) -> Any:
    return Query(ge=0, le=MAX_MINUTES, allow_inf_nan=False, description=description)


def _service_type(value: str | None, field: str = "service_type") -> str | None:
    return parse_choice(value, SERVICE_TYPES, field)


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
    inactive_minutes: Annotated[float | None, _minutes("no heartbeat for over N minutes")] = None,
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
        service_type=_service_type(service_type),
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
        service_type=_service_type(type, "type"),
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


# --- links ---------------------------------------------------------------------------------


@router.get(
    "/links",
    tags=["links"],
    summary="Links waiting for dispatch, or stale",
    response_model=ListOut[out.LinkOut],
)
async def list_links(
    ctx: Ctx,
    status: Annotated[str, status_query(LinkStatus)] = "pending",
    service_type: ServiceTypeQ = None,
    stale: Annotated[
        bool, Query(description="running/connecting links over timeout_minutes")
    ] = False,
    timeout_minutes: Annotated[float, _minutes("stale threshold")] = 15,
    request_id: uuid.UUID | None = None,
    server_id: uuid.UUID | None = None,
    limit: Limit = 100,
) -> JSON:
    kind = _service_type(service_type)
    if stale:
        items = await links.list_stale(
            ctx,
            timeout_minutes=timeout_minutes,
            service_type=kind,
            request_id=request_id,
            server_id=server_id,
            limit=clamp_limit(limit),
        )
        return responses.listing(items)
    statuses = parse_statuses(status, LinkStatus) or ["pending"]
    found = await links.list_links(  # on PostgreSQL, encoded already
        ctx,
        statuses=statuses,
        service_type=kind,
        request_id=request_id,
        server_id=server_id,
        limit=clamp_limit(limit),
    )
    return responses.listing(found)


@router.put(
    "/links/bulk-retry",
    tags=["links"],
    summary="Retry several failed links",
    response_model=UpdatedOut,
)
async def bulk_retry(ctx: Ctx, body: inputs.BulkRetryIn) -> JSON:
    return responses.ok(updated=await links.bulk_retry(ctx, link_ids=body.link_ids))


@router.put(
    "/links/mark-final-failed",
    tags=["links"],
    summary="Cancel failed links with no retries left",
    response_model=UpdatedOut,
)
async def mark_final_failed(
    ctx: Ctx, body: Annotated[inputs.MarkFinalFailedIn | None, Body()] = None
) -> JSON:
    request_id = body.request_id if body is not None else None
    return responses.ok(updated=await links.mark_final_failed(ctx, request_id=request_id))


@router.get(
    "/links/retryable",
    tags=["links"],
    summary="Failed links with retries left",
    response_model=ListOut[out.LinkOut],
)
async def retryable_links(
    ctx: Ctx,
    service_type: ServiceTypeQ = None,
    request_id: uuid.UUID | None = None,
    limit: Limit = 100,
) -> JSON:
    items = await links.list_retryable(
        ctx,
        service_type=_service_type(service_type),
        request_id=request_id,
        limit=clamp_limit(limit),
    )
    return responses.listing(items)


@router.get(
    "/links/account-stats",
    tags=["links"],
    summary="Statistics of a posting account",
    response_model=out.AccountStatsOut,
)
async def account_stats(
    ctx: Ctx,
    email: Annotated[str | None, required_query("the posting account")] = None,
    request_id: uuid.UUID | None = None,
) -> JSON:
    if not email:
        raise InvalidInput.field("email", "is required")
    return responses.ok(**await links.account_stats(ctx, email=email, request_id=request_id))


@router.post(
    "/links/bulk",
    tags=["links"],
    summary="Create up to 5,000 links, all or none",
    response_model=out.CreatedOut,
    openapi_extra=bulk_body.OPENAPI_BODY,
)
async def create_links(
    ctx: Ctx,
    caller: Caller,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSON:
    # the body (inputs.LinksBulkIn) is read here, in one pass when it can be: see bulk_body
    items = await bulk_body.read_links(request)

    async def call() -> dict[str, Any]:
        return {"success": True, "created": await links.create_links(ctx, items=items)}

    return await idempotency.respond(ctx, request, caller, idempotency_key, call)


@router.put(
    "/links/{link_id}/assign",
    tags=["links"],
    summary="Assign a pending link to a server",
    response_model=ItemOut[out.LinkOut],
    responses=Conflict,
)
async def assign_link(ctx: Ctx, link_id: uuid.UUID, body: inputs.AssignIn) -> JSON:
    return responses.item(await links.assign_link(ctx, link_id=link_id, server_id=body.server_id))


@router.put(
    "/links/{link_id}/retry",
    tags=["links"],
    summary="Retry one failed link",
    response_model=ItemOut[out.LinkOut],
    responses=Conflict,
)
async def retry_link(ctx: Ctx, link_id: uuid.UUID) -> JSON:
    return responses.item(await links.retry_link(ctx, link_id=link_id))


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
        site_type=_service_type(type, "type"),
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
