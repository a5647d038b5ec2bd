"""``assign export REQUEST_ID [--format jsonl|csv]``: a request's links on stdout, archived or
not, without passwords."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer

from assign.cli_commands.common import CommandFailed, err, run
from assign.cli_commands.servers import parse_id
from assign.db import views


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


def export_command(
    request_id: Annotated[str, typer.Argument(help="the request's id")],
    output_format: Annotated[
        Format, typer.Option("--format", help="jsonl: one JSON object a line; csv: a header row")
    ] = Format.JSONL,
) -> None:
    """Write a request's links (archived or not, never a password) to stdout."""
    from assign.errors import NotFound
    from assign.services import exports

    rid = parse_id(request_id, "request")

    async def work(ctx: Any) -> int:
        write = _csv_writer() if output_format is Format.CSV else _jsonl
        n = 0
        try:
            async for link in exports.request_links(ctx, request_id=rid):
                write(link)
                n += 1
        except NotFound:
            raise CommandFailed("no request has that id") from None
        sys.stdout.flush()
        return n

    count = run(work)
    err.print(f"{count} links of request {rid}")


def _encoded(link: dict[str, Any]) -> dict[str, Any]:
    from assign.api.responses import dumps

    return orjson.loads(dumps(link))  # type: ignore[no-any-return]


def _jsonl(link: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(_encoded(link)).decode() + "\n")


def _csv_writer() -> Any:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(views.LINK_FIELDS), lineterminator="\n")
    writer.writeheader()

    def write(link: dict[str, Any]) -> None:
        row = _encoded(link)
        row["details"] = "" if row["details"] is None else orjson.dumps(row["details"]).decode()
        writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return write
