"""Listings that PostgreSQL encodes as JSON, so the API passes one string through.

A listing of hundreds of rows costs Python far more to convert and encode than PostgreSQL to
write as JSON (no per-row objects to build, convert and garbage-collect). The encoding matches
what ``api.responses.dumps`` writes for the same rows: compact, keys in the listed order,
timestamps as RFC 3339 UTC ``...Z`` with microseconds only when not zero; inside JSON columns the
spacing and number spelling are jsonb's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.types import UTCDateTime


class JSONArray(NamedTuple):
    """Items already encoded as one JSON array (``[...]``) by the database, and how many."""

    json: str
    total: int


#: timestamptz as orjson writes an aware UTC datetime: microseconds only when not zero
_RFC3339 = (
    """replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), """
    """'.000000Z', 'Z')"""
)


def columns(table: sa.Table, fields: tuple[str, ...]) -> list[sa.ColumnElement[Any]]:
    """``fields`` of ``table`` as the JSON should show them (timestamps formatted)."""
    return [
        sa.literal_column(_RFC3339.format(column=f"{table.name}.{name}")).label(name)
        if isinstance(table.c[name].type, UTCDateTime)
        else table.c[name]
        for name in fields
    ]


def encoding(query: sa.Select[Any]) -> sa.Select[Any]:
    """A statement answering one row: how many rows ``query`` (ordered and limited as it says)
    has, and them as one JSON array of objects keyed by its column labels. PostgreSQL only."""
    t = query.subquery("t")
    # string_agg takes the rows in the subquery's order: a LIMIT subquery is never reordered
    encoded = sa.func.string_agg(sa.cast(sa.func.row_to_json(sa.literal_column("t")), sa.Text), ",")
    return sa.select(sa.func.count(), encoded).select_from(t)


async def run(
    conn: AsyncConnection, statement: sa.Select[Any], values: dict[str, Any] | None = None
) -> JSONArray:
    """The :class:`JSONArray` of an :func:`encoding` statement."""
    row = (await conn.execute(statement, values)).one()
    return JSONArray(f"[{row[1] or ''}]", row[0])
