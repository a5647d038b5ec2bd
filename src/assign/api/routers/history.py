"""History and insight, under /api/v1/admin: a link's attempts, why it waits, throughput."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from assign.api import responses
from assign.api.deps import Ctx, secured
from assign.api.responses import JSON
from assign.api.schemas import history as out
from assign.api.schemas.common import ItemOut, ListOut, error_responses
from assign.services import explain, history

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    dependencies=secured,
    responses=error_responses(400, 401, 429, 503),
)
#: how many minutes of throughput (the current one included)
Minutes = Annotated[
    int,
    Query(
        description="how far back, the current minute included (at most ASSIGN_HISTORY_DAYS)",
        json_schema_extra={"minimum": 1},
    ),
]
#: throughput by server or by request
By = Annotated[
    str,
    Query(description="`server` or `request`", json_schema_extra={"pattern": "^(server|request)$"}),
]


@router.get(
    "/links/{link_id}",
    summary="One link with its attempts, oldest first",
    response_model=ItemOut[out.LinkWithAttemptsOut],
    responses=error_responses(404),
)
async def get_link(ctx: Ctx, link_id: uuid.UUID) -> JSON:
    return responses.item(await history.get_link(ctx, link_id=link_id))


@router.get(
    "/links/{link_id}/explain",
    summary="Why the link is waiting, by the dispatcher's own rules",
    response_model=ItemOut[out.ExplainOut],
    responses=error_responses(404),
)
async def explain_link(ctx: Ctx, link_id: uuid.UUID) -> JSON:
    return responses.item(await explain.explain_link(ctx, link_id=link_id))


@router.get(
    "/stats/throughput",
    summary="Completed and failed links per minute, by server or by request",
    response_model=ListOut[out.ThroughputOut],
)
async def get_throughput(ctx: Ctx, minutes: Minutes = 60, by: By = "server") -> JSON:
    return responses.listing(await history.throughput(ctx, minutes=minutes, by=by))
