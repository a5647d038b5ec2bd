"""Liveness, readiness (the database answers) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from assign.api.deps import Ctx
from assign.api.responses import JSON, error
from assign.services import gauges

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JSON:
    return JSON({"success": True, "status": "ok"})


@router.get(
    "/readyz", summary="The database answers", responses={503: {"description": "not ready"}}
)
async def readyz(ctx: Ctx) -> Response:
    try:
        await ctx.db.ping()
    except Exception:
        return error(503, "Database unavailable", headers={"Retry-After": "1"})
    return JSON({"success": True, "status": "ready", "database": ctx.db.dialect})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(ctx: Ctx) -> Response:
    return Response(await gauges.exposition(ctx), media_type=CONTENT_TYPE_LATEST)
