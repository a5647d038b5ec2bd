"""Use cases that only list: a repository query's rows, read in one read transaction, answered
as the API's dicts. One definition per listing instead of a function restating the query's
arguments to pass them on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.services.context import Context

P = ParamSpec("P")


def listing(
    find: Callable[Concatenate[AsyncConnection, P], Awaitable[Sequence[Row[Any]]]],
    view: Callable[[Row[Any]], dict[str, Any]],
) -> Callable[Concatenate[Context, P], Coroutine[Any, Any, list[dict[str, Any]]]]:
    """The use case ``(ctx, **arguments)``: ``find(conn, **arguments)`` in one read
    transaction, each row as ``view`` makes it. It takes ``find``'s own arguments."""

    async def read(ctx: Context, /, *args: P.args, **kwargs: P.kwargs) -> list[dict[str, Any]]:
        async with ctx.db.read() as conn:
            rows = await find(conn, *args, **kwargs)
        return [view(r) for r in rows]

    read.__name__ = read.__qualname__ = find.__name__
    read.__doc__ = find.__doc__
    return read
