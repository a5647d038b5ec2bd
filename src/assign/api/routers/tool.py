"""The tool API, under /api/v1/tool: what a tool server calls with its own key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field
from starlette.types import Receive

from assign.api import responses
from assign.api.deps import MAX_LIMIT, Caller, Ctx, secured
from assign.api.responses import JSON
from assign.api.schemas import inputs
from assign.api.schemas import resources as out
from assign.api.schemas.common import ItemOut, ListOut, error_responses
from assign.errors import InvalidInput, NotFound
from assign.services import claims, links, servers, tool

router = APIRouter(
    prefix="/api/v1/tool",
    tags=["tool"],
    dependencies=secured,
    responses=error_responses(400, 401, 429, 503),
)


def _server_id(caller: Caller) -> uuid.UUID:
    assert caller.server_id is not None
    return caller.server_id


@router.post(
    "/heartbeat", summary="Report that this server is alive", response_model=ItemOut[out.ServerOut]
)
async def heartbeat(
    ctx: Ctx, caller: Caller, body: Annotated[inputs.HeartbeatIn | None, Body()] = None
) -> JSON:
    active_threads = body.active_threads if body is not None else None
    return responses.item(
        await servers.heartbeat(ctx, server_id=_server_id(caller), active_threads=active_threads)
    )


@router.post(
    "/links/claim",
    summary="Take this server's queued (then connect) links",
    response_model=ListOut[out.ClaimedLinkOut],
)
async def claim(
    request: Request,
    ctx: Ctx,
    caller: Caller,
    body: Annotated[inputs.ClaimIn | None, Body()] = None,
) -> JSON:
    limit = min(body.limit if body is not None else 10, MAX_LIMIT)
    wait = body.wait_seconds if body is not None else 0
    if wait <= 0:
        return responses.listing(await claims.claim(ctx, server_id=_server_id(caller), limit=limit))
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(request.receive, gone))
    try:
        claimed = await claims.claim(
            ctx, server_id=_server_id(caller), limit=limit, wait_seconds=wait, gone=gone
        )
    finally:
        watcher.cancel()
    return responses.listing(claimed)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Sets ``gone`` when the client goes away (the body is read already: what the server
    hands over next is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


#: ``:uuid`` so that ``GET /links/claim`` is a 405 (claim is a POST), not a malformed id;
#: a malformed id here answers 404
@router.get(
    "/links/{link_id:uuid}",
    summary="One of this server's links",
    response_model=ItemOut[out.LinkOut],
    responses=error_responses(404),
)
async def get_link(ctx: Ctx, caller: Caller, link_id: uuid.UUID) -> JSON:
    link = await links.get_link(ctx, link_id=link_id)
    if link["server_id"] != _server_id(caller):
        raise NotFound("Link not found")
    return responses.item(link)


@router.put(
    "/links/{link_id}/result",
    summary="Report the result of a running or connecting link",
    response_model=ItemOut[out.LinkOut],
    responses=error_responses(404, 409),
)
async def report_result(
    ctx: Ctx, caller: Caller, link_id: uuid.UUID, body: inputs.ResultIn
) -> JSON:
    link = await tool.report_result(
        ctx,
        server_id=_server_id(caller),
        link_id=link_id,
        status=body.status,
        profile_url=body.profile_url,
        post_url=body.post_url,
        error=body.error,
        details=body.details,
    )
    return responses.item(link)


class ResultAnswer(BaseModel):
    id: uuid.UUID
    code: int = Field(description="200 applied, 404 not this server's link, 409 not running")
    error: str | None = Field(None, description="why it was not applied (absent on 200)")


class ResultsOut(BaseModel):
    success: bool = True
    updated: int = Field(description="how many results were applied (answered 200)")
    data: list[ResultAnswer]


@router.put(
    "/links/results",
    summary="Report results of many running or connecting links at once",
    response_model=ResultsOut,
)
async def report_results(ctx: Ctx, caller: Caller, body: inputs.ResultsIn) -> JSON:
    repeated = body.repeated()
    if repeated is not None:
        first, later = repeated
        raise InvalidInput.field(f"results[{later}].id", f"repeats results[{first}].id")
    reports = [
        tool.Report(r.id, r.status, r.profile_url, r.post_url, r.error, r.details)
        for r in body.results
    ]
    updated, answers = await tool.report_results(ctx, server_id=_server_id(caller), reports=reports)
    return responses.ok(updated=updated, data=answers)
