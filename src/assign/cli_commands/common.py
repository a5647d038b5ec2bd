"""What every command shares: settings, a context on the database, one-line failures, output.

A command that fails says so in one line on stderr (what went wrong and what to do) and exits
with status 1; no traceback. ``ASSIGN_LOG_LEVEL=DEBUG`` shows the traceback as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from assign.settings import Settings

T = TypeVar("T")

console = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CommandFailed(Exception):
    """A failure to report in one line (see :func:`fail`)."""


def fail(message: str) -> NoReturn:
    """Print ``message`` as the one line of a failure on stderr and exit with status 1."""
    err.print(f"[red]error:[/red] {_one_line(message)}", markup=True)
    raise typer.Exit(1)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_settings(**overrides: Any) -> Settings:
    """The settings (``overrides``: values given as command options), or a one-line failure
    naming each bad variable."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "ASSIGN_" + "_".join(str(p) for p in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            shown = os.environ.get(name)
            value = "" if shown is None or "KEY" in name else f"={shown!r}"
            problems.append(f"{name}{value}: {message}")
        fail(f"invalid setting {'; '.join(problems)}. Fix it in the environment and run again")


def describe_database(url: str) -> str:
    """The database URL as it may be shown (password hidden)."""
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(url).render_as_string(hide_password=True)
        return shown.replace("+asyncpg://", "://").replace("+aiosqlite://", "://")
    except Exception:
        return "the configured database"


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """One sentence saying what went wrong and what to do about it."""
    from sqlalchemy.exc import DBAPIError, ProgrammingError

    from assign.db.engine import is_connection_error
    from assign.db.migrate import SchemaTooNew
    from assign.errors import AppError
    from assign.security.secret import MissingSecret

    where = describe_database(settings.database_url)
    if isinstance(exc, CommandFailed | SchemaTooNew | MissingSecret):
        return str(exc)
    if isinstance(exc, AppError):
        return exc.message
    missing_table = isinstance(exc, ProgrammingError) and "does not exist" in str(exc.orig)
    if missing_table or "no such table" in str(exc):
        return f"the database {where} has no Assign schema (or an old one): run `assign migrate`"
    detail = _driver_message(exc)
    if is_connection_error(exc) or isinstance(exc, DBAPIError | OSError):
        return (
            f"cannot use the database {where}: {detail}. Check ASSIGN_DATABASE_URL and that "
            "the database is running and reachable"
        )
    return f"{type(exc).__name__}: {detail} (ASSIGN_LOG_LEVEL=DEBUG shows the traceback)"


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def run_async(settings: Settings, main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` with any failure turned into one line."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except typer.Exit:
        raise
    except Exception as exc:
        if settings.log_level.upper() == "DEBUG":
            logging.getLogger("assign").exception("command failed")
        fail(describe_failure(exc, settings))


def with_context(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(ctx)`` against the configured database (migrating SQLite first)."""
    from assign.app import build_context

    prepare_database(settings, migrate_sqlite=True)

    async def main() -> T:
        ctx = build_context(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.hub.close()
            await ctx.db.dispose()

    return run_async(settings, main)


def run(work: Callable[[Any], Awaitable[T]]) -> T:
    """:func:`with_context` under the settings the environment gives."""
    return with_context(load_settings(), work)


def prepare_database(settings: Settings, *, migrate_sqlite: bool) -> str | None:
    """Refuse a schema newer than this release; migrate the embedded SQLite database.

    Answers the revision found (None: never migrated)."""
    from assign.db.migrate import check_not_newer, current_revision, upgrade

    path = settings.sqlite_path
    if path is not None and not path.parent.is_dir():
        fail(
            f"cannot use the database {describe_database(settings.database_url)}: the directory "
            f"{path.parent} does not exist. Create it, or fix ASSIGN_DATABASE_URL"
        )

    async def current() -> str | None:
        return await current_revision(settings.database_url)

    revision = run_async(settings, current)
    try:
        check_not_newer(revision)
        if settings.uses_sqlite_file and migrate_sqlite:
            upgrade(settings.database_url)
    except Exception as exc:
        fail(describe_failure(exc, settings))
    return revision


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout (UUIDs as strings, times as RFC 3339 UTC)."""
    import orjson

    from assign.api.responses import dumps

    print(orjson.dumps(orjson.loads(dumps(data)), option=orjson.OPT_INDENT_2).decode())


def print_rows(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table: drawn by rich on a terminal (ids never folded), plain aligned columns
    otherwise, so that a pipe or a file gets every value whole whatever the width."""
    cells = [[_cell(v) for v in row] for row in rows]
    if console.is_terminal:
        table = Table(*headers)
        for column in table.columns:
            column.no_wrap = True
            column.overflow = "ignore"
        for row in cells:
            table.add_row(*row)
        Console(width=max(console.width, _width(headers, cells))).print(table)
        return
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for line in [list(headers), *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _width(headers: Sequence[str], cells: list[list[str]]) -> int:
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    return sum(widths) + 3 * len(widths) + 1


def _cell(value: Any) -> str:
    from datetime import datetime

    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
