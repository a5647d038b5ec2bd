"""``assign server list | add | set-status | delete``: the fleet by hand, through the services."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from assign.cli_commands.common import err, fail, print_json, print_rows, run
from assign.domain.states import SERVICE_TYPES, ServerStatus

server_app = typer.Typer(help="Manage servers.", no_args_is_help=True)

JSON_OPTION = typer.Option("--json", help="print JSON instead of a table")


def parse_id(value: str, what: str = "server") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(
            f"{value!r} is not a {what} id (a UUID): `assign {what.replace(' ', '-')} list` shows the ids"
        )


def parse_service_types(value: str | None) -> list[str]:
    types = [t.strip() for t in (value or "").split(",") if t.strip()]
    unknown = [t for t in types if t not in SERVICE_TYPES]
    if unknown:
        fail(
            f"unknown service type {', '.join(unknown)} in --service-types: "
            f"use some of {', '.join(SERVICE_TYPES)}, comma-separated"
        )
    return types


@server_app.command("add")
def server_add(
    name: str,
    service: Annotated[str, typer.Option(help="tool, assign, ...")] = "tool",
    max_threads: Annotated[int, typer.Option(min=1, help="slots")] = 10,
    priority: Annotated[int, typer.Option(help="higher is used first")] = 0,
    ip: Annotated[str | None, typer.Option(help="address, informative")] = None,
    service_types: Annotated[
        str | None,
        typer.Option(help="comma-separated link service types it accepts; none given = all"),
    ] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Create a server and print its API key (shown only this once)."""
    from assign.services import servers

    types = parse_service_types(service_types)

    async def work(ctx: Any) -> dict[str, Any]:
        return await servers.create_server(
            ctx,
            name=name,
            service=service,
            max_threads=max_threads,
            priority=priority,
            ip=ip,
            service_types=types,
        )

    server = run(work)
    if as_json:
        print_json(server)
        return
    err.print(f"server [bold]{server['name']}[/bold] id {server['id']} service {server['service']}")
    err.print("API key (shown only this once):")
    print(server["api_key"])


@server_app.command("list")
def server_list(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """List servers and their load."""
    from assign.services import servers

    rows = run(
        lambda ctx: servers.list_servers(ctx, statuses=None, inactive_minutes=None, limit=10_000)
    )
    if as_json:
        print_json(rows)
        return
    print_rows(
        ("id", "name", "service", "status", "tasks", "threads", "priority", "types", "heartbeat"),
        [
            (
                r["id"], r["name"], r["service"], r["status"], r["active_tasks"], r["max_threads"],
                r["priority"], r["service_types"], r["last_health_check"] or "never",
            )
            for r in rows
        ],
    )  # fmt: skip


@server_app.command("set-status")
def server_set_status(
    server_id: Annotated[str, typer.Argument(help="the server's id")],
    status: Annotated[str, typer.Argument(help="online, offline or maintenance")],
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Set a server online, offline or maintenance (its queued links go back to pending
    unless online)."""
    from assign.services import servers

    allowed = [s.value for s in ServerStatus]
    if status not in allowed:
        fail(f"unknown server status {status!r}: use one of {', '.join(allowed)}")
    sid = parse_id(server_id)
    server = run(lambda ctx: _not_found_hint(servers.set_status(ctx, server_id=sid, status=status)))
    if as_json:
        print_json(server)
        return
    err.print(f"server {server['name']} ({server['id']}) is {server['status']}")


@server_app.command("delete")
def server_delete(server_id: Annotated[str, typer.Argument(help="the server's id")]) -> None:
    """Delete a server that has no link queued, running or connecting."""
    from assign.services import servers

    sid = parse_id(server_id)
    run(lambda ctx: _not_found_hint(servers.delete_server(ctx, server_id=sid)))
    err.print(f"server {sid} deleted")


async def _not_found_hint(work: Any) -> Any:
    """Await a server use case; an unknown id or a refusal says what to do next."""
    from assign.cli_commands.common import CommandFailed
    from assign.errors import Conflict, NotFound

    try:
        return await work
    except NotFound:
        raise CommandFailed("no server has that id: `assign server list` shows the ids") from None
    except Conflict as exc:
        raise CommandFailed(
            f"{exc.message}: set it to maintenance first (`assign server set-status ID "
            "maintenance`) and wait until its links have finished"
        ) from None
