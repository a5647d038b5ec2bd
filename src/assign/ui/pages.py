"""The console's pages (GET): each reads through one service function and renders a template."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import ParamSpec, cast

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from assign.api.deps import parse_choice, parse_statuses
from assign.domain.states import SERVICE_TYPES, RequestStatus
from assign.errors import AppError
from assign.services import catalog, console, explain, history, link_sets
from assign.services.sessions import Session
from assign.ui import filters, render
from assign.ui.auth import Viewer

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
P = ParamSpec("P")


def failed(request: Request, session: Session, exc: AppError) -> Response:
    """A page that could not be shown: the reason, with the status code the API would answer."""
    fields = [d["field"] for d in exc.details or []]
    return render.page(
        request, "error.html", session=session, status_code=exc.status_code,
        title="Not found" if exc.status_code == 404 else "Not shown", message=exc.message,
        fields=fields,
    )  # fmt: skip


def shows_errors(
    page: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """``page``, with an ``AppError`` it raises (a bad filter, an unknown id) shown by
    :func:`failed`."""

    @functools.wraps(page)
    async def shown(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await page(*args, **kwargs)
        except AppError as exc:
            # FastAPI passes a route's parameters by name
            return failed(cast(Request, kwargs["request"]), cast(Session, kwargs["session"]), exc)

    return shown


@router.get("/ui")
@router.get("/ui/")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(render.base_path(request) + "/overview", status_code=303)


@router.get("/ui/overview")
async def overview(request: Request, session: Viewer) -> Response:
    data = await console.overview(request.app.state.ctx)
    return render.page(request, "overview.html", session=session, data=data)


@router.get("/ui/overview/live")
async def overview_live(request: Request, session: Viewer) -> Response:
    """The Overview's figures alone, fetched by the page every 5 s unless paused."""
    data = await console.overview(request.app.state.ctx)
    return render.page(request, "_overview_live.html", session=session, data=data)


@router.get("/ui/servers")
async def servers_list(request: Request, session: Viewer) -> Response:
    items = await console.servers_page(request.app.state.ctx)
    return render.page(request, "servers.html", session=session, servers=items)


@router.get("/ui/servers/{server_id}")
@shows_errors
async def server_detail(request: Request, session: Viewer, server_id: str) -> Response:
    data = await console.server_page(
        request.app.state.ctx, server_id=_path_id(server_id, "server_id")
    )
    return render.page(request, "server.html", session=session, **data)


@router.get("/ui/requests")
@shows_errors
async def requests_list(request: Request, session: Viewer) -> Response:
    params = request.query_params
    items, next_after = await console.requests_page(
        request.app.state.ctx,
        statuses=parse_statuses(params.get("status"), RequestStatus) or [],
        service_type=parse_choice(params.get("service_type"), SERVICE_TYPES, "service_type"),
        name=filters.text(params.get("name"), "name"),
        after=filters.one_id(params.get("after"), "after"),
        limit=PAGE_SIZE,
    )
    kept = {k: params[k] for k in ("status", "service_type", "name") if params.get(k)}
    return render.page(
        request, "requests.html", session=session, requests=items, next_after=next_after,
        params=kept, statuses=filters.REQUEST_STATUSES, service_types=SERVICE_TYPES,
    )  # fmt: skip


@router.get("/ui/requests/{request_id}")
@shows_errors
async def request_detail(request: Request, session: Viewer, request_id: str) -> Response:
    ctx = request.app.state.ctx
    rid = _path_id(request_id, "request_id")
    data = await console.request_page(ctx, request_id=rid)
    items, next_after = await link_sets.list_page(
        ctx, match=filters.LinkFilter(request_id=rid), after=None, limit=PAGE_SIZE
    )
    return render.page(
        request, "request.html", session=session, links=items, more=next_after is not None,
        statuses=filters.LINK_STATUSES, **data,
    )  # fmt: skip


@router.get("/ui/links")
@shows_errors
async def links_list(request: Request, session: Viewer) -> Response:
    params = request.query_params
    match = filters.link_filter(params)
    after = filters.one_id(params.get("after"), "after")
    items, next_after = await link_sets.list_page(
        request.app.state.ctx, match=match, after=after, limit=PAGE_SIZE
    )
    return render.page(
        request, "links.html", session=session, links=items, next_after=next_after,
        params=filters.filter_params(params), labels=filters.LINK_FILTERS,
        statuses=filters.LINK_STATUSES, service_types=SERVICE_TYPES,
    )  # fmt: skip


@router.get("/ui/links/{link_id}")
@shows_errors
async def link_detail(request: Request, session: Viewer, link_id: str) -> Response:
    ctx = request.app.state.ctx
    lid = _path_id(link_id, "link_id")
    link = await history.get_link(ctx, link_id=lid)
    why = await explain.explain_link(ctx, link_id=lid)
    return render.page(
        request, "link.html", session=session, link=link, attempts=link["attempts"], explain=why
    )


@router.get("/ui/accounts")
@shows_errors
async def accounts_list(request: Request, session: Viewer) -> Response:
    params = request.query_params
    items, next_after = await console.accounts_page(
        request.app.state.ctx,
        group_id=filters.one_id(params.get("group_id"), "group_id"),
        after=filters.one_id(params.get("after"), "after"),
        limit=PAGE_SIZE,
    )
    kept = {"group_id": params["group_id"]} if params.get("group_id") else {}
    return render.page(
        request, "accounts.html", session=session, accounts=items, next_after=next_after,
        group_id=params.get("group_id", ""), params=kept,
    )  # fmt: skip


@router.get("/ui/settings")
async def settings_page(request: Request, session: Viewer) -> Response:
    groups = await catalog.all_settings(request.app.state.ctx)
    return render.page(
        request, "settings.html", session=session, values=groups.get("rate_limit", {}),
        groups=groups, errors={},
    )  # fmt: skip


def _path_id(raw: str, field: str) -> uuid.UUID:
    found = filters.one_id(raw, field)
    if found is None:
        raise filters.InvalidInput.field(field, "is required")
    return found
