"""The ``Idempotency-Key`` header of the creating POSTs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from assign.api.deps import Caller, Ctx
from assign.api.middleware import Principal
from assign.api.responses import JSON, dumps
from assign.services import idempotency
from assign.services.context import Context

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="repeat a create safely: the same key and body answer the first response; "
        "the same key with another body is a 409 (keys are kept 24 hours)",
    ),
]


async def respond(
    ctx: Context,
    request: Request,
    caller: Principal,
    key: str | None,
    call: Callable[[], Awaitable[dict[str, Any]]],
    status_code: int = 200,
) -> JSON:
    """``call()``'s answer, run at most once per key and caller."""
    if key is None:
        return JSON(await call(), status_code=status_code)
    status, body = await idempotency.run_once(
        ctx,
        principal=caller.key_hash,
        key=key,
        route=f"{request.method} {request.url.path}",
        body=await request.body(),
        status_code=status_code,
        call=call,
        encode=dumps,
    )
    response = JSON(None, status_code=status)
    response.body = body
    response.headers["content-length"] = str(len(body))
    return response


class Idempotent:
    """What a creating POST answers with at most once per ``Idempotency-Key`` and caller (a
    dependency: the context, the caller, the request and its key)."""

    def __init__(
        self, ctx: Ctx, caller: Caller, request: Request, idempotency_key: IdempotencyKey = None
    ) -> None:
        self.ctx = ctx
        self.caller = caller
        self.request = request
        self.key = idempotency_key

    async def respond(
        self, call: Callable[[], Awaitable[dict[str, Any]]], status_code: int = 200
    ) -> JSON:
        """:func:`respond` for this request."""
        return await respond(self.ctx, self.request, self.caller, self.key, call, status_code)

    async def created(self, create: Callable[[Context], Awaitable[Any]]) -> JSON:
        """201 ``{"success": true, "data": create(ctx)}``."""

        async def call() -> dict[str, Any]:
            return {"success": True, "data": await create(self.ctx)}

        return await self.respond(call, 201)


Once = Annotated[Idempotent, Depends()]
