"""The console's actions (POST): each asks for a confirmation naming it, then calls the same
service function as the API (one transaction, the same rules) and says what it did."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from assign.domain.filters import LinkFilter
from assign.domain.states import LinkStatus, RequestStatus, ServerStatus
from assign.errors import AppError, InvalidInput
from assign.services import catalog, link_sets, requests, servers, sessions
from assign.services.sessions import Session
from assign.ui import filters, render
from assign.ui.auth import Actor, Form, redirect

router = APIRouter(include_in_schema=False)
HIDDEN = ("csrf_token", "confirmed")


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def _confirm(
    request: Request, session: Session, form: Form, *, action: str, question: str, detail: str
) -> Response:
    """The confirmation page: the question, and the same form again with the action's button."""
    kept = [(k, v) for k, values in form.items() if k not in HIDDEN for v in values]
    return render.page(
        request, "confirm.html", session=session, action=action, question=question,
        detail=detail, fields=kept, back=_back(request, form, "/overview"),
    )  # fmt: skip


def _back(request: Request, form: Form, default: str) -> str:
    """Where to go after the action: ``next`` when it is a console page, else ``default``."""
    base = render.base_path(request)
    target = form.one("next")
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + default


async def _act(
    request: Request,
    session: Session,
    form: Form,
    *,
    ask: Callable[[], Awaitable[tuple[str, str, str]]],
    run: Callable[[], Awaitable[str]],
    default: str,
) -> Response:
    """Confirm (``ask`` gives action, question, detail), then ``run`` and show its notice."""
    try:
        if form.one("confirmed") != "yes":
            action, question, detail = await ask()
            return _confirm(request, session, form, action=action, question=question, detail=detail)
        notice = await run()
    except AppError as exc:
        return render.page(
            request, "error.html", session=session, status_code=exc.status_code,
            title="Not done", message=exc.message,
            fields=[d["field"] for d in exc.details or []],
        )  # fmt: skip
    await sessions.set_flash(_ctx(request), id_hash=session.id_hash, flash=notice)
    response = redirect(request, "")
    response.headers["location"] = _back(request, form, default)
    return response


# --- servers -------------------------------------------------------------------------------


def _server_action(label: str, status: str | None) -> Callable[..., Awaitable[Response]]:
    async def act(request: Request, actor: Actor, server_id: uuid.UUID) -> Response:
        session, form = actor
        ctx = _ctx(request)

        async def ask() -> tuple[str, str, str]:
            name = (await servers.get_server(ctx, server_id=server_id))["name"]
            if status is None:
                return label, f"Delete server {name}?", "The server and its key are removed."
            detail = (
                "It takes new links again."
                if status == ServerStatus.ONLINE
                else "It gets no new links; its queued links go back to pending."
            )
            return label, f"{label} on server {name}?", detail

        async def run() -> str:
            if status is None:
                await servers.delete_server(ctx, server_id=server_id)
                return "Server deleted."
            found = await servers.set_status(ctx, server_id=server_id, status=status)
            return f"Server {found['name']} is {found['status']}."

        default = "/servers" if status is None else f"/servers/{server_id}"
        return await _act(request, session, form, ask=ask, run=run, default=default)

    return act


for _path, _label, _status in (
    ("maintenance", "Set maintenance", ServerStatus.MAINTENANCE),
    ("online", "Set online", ServerStatus.ONLINE),
    ("delete", "Delete", None),
):
    router.add_api_route(
        f"/ui/servers/{{server_id}}/{_path}", _server_action(_label, _status), methods=["POST"]
    )


# --- requests ------------------------------------------------------------------------------

REQUEST_ACTIONS = {
    "complete": ("Complete", "Its links nobody has started are canceled; it gets no new work."),
    "connect": (
        "Connect",
        "Its completed links with a profile move to connect; its links without one are canceled.",
    ),
    "retry-failed": (
        "Retry failed",
        "Its failed links with retries left go back to the queue now.",
    ),
    "cancel": (
        "Cancel",
        "Its pending, queued and connect links are canceled; it gets no new work.",
    ),
}


async def _run_request_action(ctx: Any, path: str, request_id: uuid.UUID) -> str:
    if path == "complete":
        done = await requests.complete(ctx, request_id=request_id)
        return f"Request completed; {done['links_canceled']} links canceled."
    if path == "connect":
        done = await requests.connect(ctx, request_id=request_id)
        return (
            f"Request connecting; {done['links_connect']} links to connect, "
            f"{done['links_canceled']} canceled."
        )
    if path == "retry-failed":
        match = LinkFilter(statuses=(LinkStatus.FAILED,), request_id=request_id)
        n = await link_sets.retry(ctx, match=match, link_ids=None)
        return f"Retried {n} links."
    await requests.set_status(ctx, request_id=request_id, status=RequestStatus.CANCELED)
    return "Request canceled."


def _request_action(path: str) -> Callable[..., Awaitable[Response]]:
    label, detail = REQUEST_ACTIONS[path]

    async def act(request: Request, actor: Actor, request_id: uuid.UUID) -> Response:
        session, form = actor
        ctx = _ctx(request)

        async def ask() -> tuple[str, str, str]:
            name = (await requests.get_request(ctx, request_id=request_id))["name"]
            if path == "retry-failed":
                match = LinkFilter(statuses=(LinkStatus.FAILED,), request_id=request_id)
                n = await link_sets.count(ctx, match=match, link_ids=None)
                return label, f"Retry failed links of request {name}: {n} failed links?", detail
            return label, f"{label} request {name}?", detail

        async def run() -> str:
            return await _run_request_action(ctx, path, request_id)

        return await _act(
            request, session, form, ask=ask, run=run, default=f"/requests/{request_id}"
        )

    return act


for _path in REQUEST_ACTIONS:
    router.add_api_route(
        f"/ui/requests/{{request_id}}/{_path}", _request_action(_path), methods=["POST"]
    )


# --- links ---------------------------------------------------------------------------------


def _chosen(form: Form) -> tuple[LinkFilter | None, list[uuid.UUID] | None]:
    """Every link matching the form's filter ("Select all matching"), or the selected ones."""
    if form.one("all") == "1":
        return filters.link_filter({k: form.one(k) for k in filters.LINK_FILTERS}), None
    ids = [filters.one_id(v, "link_id") for v in form.get("link_id", [])]
    chosen = [i for i in ids if i is not None]
    if not chosen:
        raise InvalidInput.field("link_id", "select some links, or Select all matching")
    return None, chosen


def _links_action(label: str, run_with: Any, done: str) -> Callable[..., Awaitable[Response]]:
    async def act(request: Request, actor: Actor) -> Response:
        session, form = actor
        ctx = _ctx(request)

        async def ask() -> tuple[str, str, str]:
            match, ids = _chosen(form)
            n = await link_sets.count(ctx, match=match, link_ids=ids)
            which = "matching the filter" if ids is None else "selected"
            if match is not None and not match.is_empty:
                shown = [
                    f"{filters.LINK_FILTERS[k]} {form.one(k)}"
                    for k in filters.LINK_FILTERS
                    if form.one(k)
                ]
                detail_of_filter = " Filter: " + ", ".join(shown) + "."
            else:
                detail_of_filter = " No filter: every link." if ids is None else ""
            detail = (
                "Only failed links with retries left, of open requests, go back to the queue."
                if label == "Retry"
                else "Links not yet completed or canceled are canceled; their slots are freed."
            )
            return label, f"{label} {n:,} links {which}?", detail + detail_of_filter

        async def run() -> str:
            match, ids = _chosen(form)
            n = await run_with(ctx, match=match, link_ids=ids)
            return f"{done} {n:,} links."

        return await _act(request, session, form, ask=ask, run=run, default="/links")

    return act


router.add_api_route(
    "/ui/links/retry", _links_action("Retry", link_sets.retry, "Retried"), methods=["POST"]
)
router.add_api_route(
    "/ui/links/cancel", _links_action("Cancel", link_sets.cancel, "Canceled"), methods=["POST"]
)


# --- settings ------------------------------------------------------------------------------

RATE_FIELDS = {"max_posts_per_day": "Max posts per day", "cooldown_minutes": "Cooldown minutes"}


def _rate_values(form: Form) -> dict[str, str]:
    """The two numbers, checked: a whole number of posts, a number of minutes, neither negative."""
    out: dict[str, str] = {}
    for name, label in RATE_FIELDS.items():
        raw = form.one(name).strip()
        try:
            value = int(raw) if name == "max_posts_per_day" else float(raw)
        except ValueError:
            kind = "a whole number" if name == "max_posts_per_day" else "a number"
            raise InvalidInput.field(name, f"{label} must be {kind}") from None
        if value < 0 or value != value or value in (float("inf"),):
            raise InvalidInput.field(name, f"{label} must be 0 or more")
        out[name] = raw if name == "max_posts_per_day" else f"{value:g}"
    return out


@router.post("/ui/settings")
async def save_settings(request: Request, actor: Actor) -> Response:
    session, form = actor
    ctx = _ctx(request)
    try:
        _rate_values(form)
    except InvalidInput as exc:  # the form again, the bad field's message beside it
        field = (exc.details or [{}])[0].get("field", "")
        entered = {k: form.one(k) for k in RATE_FIELDS}
        groups = await catalog.all_settings(ctx)
        return render.page(
            request, "settings.html", session=session, status_code=400, values=entered,
            groups=groups, errors={field: (exc.details or [{}])[0].get("message", exc.message)},
        )  # fmt: skip

    async def ask() -> tuple[str, str, str]:
        values = _rate_values(form)
        text = ", ".join(f"{RATE_FIELDS[k]} {v}" for k, v in values.items())
        return (
            "Save",
            f"Save the rate_limit settings: {text}?",
            "The dispatcher uses them on its next tick.",
        )

    async def run() -> str:
        await catalog.put_settings(ctx, group="rate_limit", values=_rate_values(form))
        return "Settings saved."

    return await _act(request, session, form, ask=ask, run=run, default="/settings")
