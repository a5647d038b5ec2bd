"""The links of the worker API (included by api/routers/worker.py, under its prefix)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from assign.api import bulk_body, responses
from assign.api.deps import (
    Ctx,
    Limit,
    ServiceTypeQ,
    clamp_limit,
    parse_statuses,
    required_query,
    status_query,
)
from assign.api.idempotency import Once
from assign.api.responses import JSON
from assign.api.routers.worker_params import (
    Conflict,
    minutes,
    service_type_of,
)
from assign.api.schemas import inputs
from assign.api.schemas import resources as out
from assign.api.schemas.common import ItemOut, ListOut, UpdatedOut
from assign.domain.filters import LinkScope
from assign.domain.states import LinkStatus
from assign.errors import InvalidInput
from assign.services import links

router = APIRouter()


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
    timeout_minutes: Annotated[float, minutes("stale threshold")] = 15,
    request_id: uuid.UUID | None = None,
    server_id: uuid.UUID | None = None,
    limit: Limit = 100,
) -> JSON:
    kind = service_type_of(service_type)
    # a stale listing reads no status (not even a malformed one)
    statuses = None if stale else parse_statuses(status, LinkStatus) or ["pending"]
    scope: LinkScope = {
        "service_type": kind,
        "request_id": request_id,
        "server_id": server_id,
        "limit": clamp_limit(limit),
    }
    if statuses is None:
        items = await links.list_stale(ctx, timeout_minutes=timeout_minutes, **scope)
        return responses.listing(items)
    # on PostgreSQL, encoded already
    return responses.listing(await links.list_links(ctx, statuses=statuses, **scope))


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
        service_type=service_type_of(service_type),
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
async def create_links(once: Once) -> JSON:
    # the body (inputs.LinksBulkIn) is read here, in one pass when it can be: see bulk_body
    items = await bulk_body.read_links(once.request)

    async def call() -> dict[str, Any]:
        return {"success": True, "created": await links.create_links(once.ctx, items=items)}

    return await once.respond(call)


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
