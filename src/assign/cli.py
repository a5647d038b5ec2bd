"""The ``assign`` command: serve, dispatch, worker, migrate, servers, keys, stats, demo."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from assign.cli_commands.admin_keys import admin_key_app
from assign.cli_commands.common import console, err, fail, load_settings, print_json, run
from assign.cli_commands.common import with_context as _with_context
from assign.cli_commands.export import export_command
from assign.cli_commands.servers import JSON_OPTION, server_app
from assign.settings import Settings

app = typer.Typer(
    help="Assign: dispatch link-building work to a fleet of tool servers.",
    no_args_is_help=True,
    # a failure is one line on stderr (see cli_commands.common), never a page of traceback
    pretty_exceptions_enable=False,
)
secrets_app = typer.Typer(help="Manage the password-encryption secret.", no_args_is_help=True)
app.add_typer(server_app, name="server")
app.add_typer(admin_key_app, name="admin-key")
app.add_typer(secrets_app, name="secrets")
app.command("export")(export_command)

__all__ = ["app", "console", "err", "load_settings", "main"]


def _show_version(value: bool) -> None:
    if value:
        from assign import __version__

        print(f"assign {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Assign: dispatch link-building work to a fleet of tool servers."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    no_dispatcher: Annotated[
        bool, typer.Option("--no-dispatcher", help="run the API only")
    ] = False,
    workers: Annotated[int, typer.Option(help="API worker processes")] = 1,
    root_path: Annotated[
        str | None,
        typer.Option("--root-path", help="prefix a proxy strips, e.g. /assign (ASSIGN_ROOT_PATH)"),
    ] = None,
) -> None:
    """Run the API (and, unless --no-dispatcher, the dispatcher) in one process."""
    import uvicorn

    from assign import logging as assign_logging
    from assign.security.secret import MissingSecret, resolve_secret

    overrides = {} if root_path is None else {"root_path": root_path}
    settings = load_settings(**overrides)
    assign_logging.setup(settings.log_level, json=settings.log_json)
    try:
        resolve_secret(settings)
    except MissingSecret as exc:
        fail(str(exc))
    _prepare_schema(settings)
    _hand_to_workers(dispatcher=not no_dispatcher, overrides=overrides)
    # uvicorn raises the signal that stopped it again once it has shut down gracefully; SIGTERM
    # is how service managers ask for a stop, so that ends the process with status 0
    signal.signal(signal.SIGTERM, _exit_ok)
    uvicorn.run(
        "assign.cli:_asgi_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        # longer than clients keep idle connections (httpx: 5 s), so a client never reuses a
        # connection the server is closing at that very moment
        timeout_keep_alive=65,
        loop="uvloop",
        http="httptools",
        # behind a proxy that strips this prefix: the ASGI root_path (routes match after it)
        root_path=settings.root_path,
    )


def _prepare_schema(settings: Settings) -> None:
    """Migrate the embedded SQLite database; insist that PostgreSQL was migrated by command;
    refuse a schema newer than this release knows."""
    from assign.cli_commands.common import prepare_database
    from assign.db.migrate import head_revision

    current = prepare_database(settings, migrate_sqlite=True)
    if not settings.uses_sqlite_file and current != head_revision():
        fail(
            f"the database schema is at {current or 'nothing'}, this Assign needs "
            f"{head_revision()}: run `assign migrate` first"
        )


def _exit_ok(_signum: int, _frame: Any) -> None:
    sys.exit(0)


#: The one place state crosses the environment: uvicorn's worker processes import the
#: application factory by name and take no arguments, so what ``serve`` decided (run the
#: dispatcher? settings given as options) travels to them in this variable, as JSON.
SERVE_STATE = "ASSIGN__SERVE"


def _hand_to_workers(*, dispatcher: bool, overrides: dict[str, Any]) -> None:
    os.environ[SERVE_STATE] = json.dumps({"dispatcher": dispatcher, "settings": overrides})


def _asgi_factory() -> Any:
    from assign import logging as assign_logging
    from assign.app import create_app

    state = json.loads(os.environ.get(SERVE_STATE) or "{}")
    settings = Settings(**state.get("settings", {}))
    assign_logging.setup(settings.log_level, json=settings.log_json)
    app = create_app(settings, migrate=False, dispatcher=bool(state.get("dispatcher")))
    # a long-lived server: what exists after start-up lives on, so full collections need not
    # scan it; and a bulk create's tens of thousands of short-lived objects should not set off
    # a collection every 700 allocations (measured: about 40 ms of a 5,000-link batch)
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return app


@app.command()
def dispatch(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="port of its /metrics (default ASSIGN_METRICS_PORT, 9108); 0 turns it off",
            min=0,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="address /metrics listens on")] = "0.0.0.0",
) -> None:
    """Run the dispatcher alone (several may run; one acts at a time), with /metrics."""
    from functools import partial

    from assign import logging as assign_logging
    from assign.dispatcher.loop import main as loop_main
    from assign.dispatcher.metrics_server import run_with_metrics

    # a stop asked for before the loop's own handler is installed is still a clean exit
    signal.signal(signal.SIGTERM, _exit_ok)
    settings = load_settings()
    assign_logging.setup(settings.log_level, json=settings.log_json)
    _prepare_schema(settings)
    port = settings.metrics_port if metrics_port is None else metrics_port
    dispatcher_main = partial(
        run_with_metrics, main=loop_main, host=metrics_host, port=port or None
    )
    _with_context(settings, dispatcher_main)


@app.command()
def worker(
    handler: Annotated[str, typer.Argument(help="MODULE:FUNCTION, the handler of each link")],
    url: Annotated[
        str, typer.Option("--url", envvar="ASSIGN_WORKER_URL", help="the Assign service")
    ] = "http://127.0.0.1:8000",
    key: Annotated[
        str, typer.Option("--key", envvar="ASSIGN_WORKER_KEY", help="this tool server's key")
    ] = "",
    concurrency: Annotated[
        int | None, typer.Option(help="links at once (default: the server's max_threads)")
    ] = None,
) -> None:
    """Run a tool server's worker: claim, run HANDLER on each link, report, until SIGTERM."""
    import importlib
    import logging

    from assign.worker import run_worker

    if not key:
        err.print("[red]A tool server key is needed: --key or ASSIGN_WORKER_KEY[/red]")
        raise typer.Exit(2)
    module_name, _, function_name = handler.partition(":")
    if not module_name or not function_name:
        err.print("[red]HANDLER is MODULE:FUNCTION, e.g. mytool.handlers:post[/red]")
        raise typer.Exit(2)
    sys.path.insert(0, os.getcwd())  # a module next to where the command runs, like uvicorn
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        err.print(f"[red]Cannot load {handler}: {exc}[/red]")
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tally = run_worker(url, key, function, concurrency)
    console.print(
        f"claimed {tally.claimed}, completed {tally.completed}, failed {tally.failed}, "
        f"refused {tally.rejected}, calls retried {tally.retries}"
    )


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Bring the database schema up to date."""
    from assign.cli_commands.common import describe_failure
    from assign.db.migrate import upgrade

    settings = load_settings()
    try:
        before, after = upgrade(settings.migration_url, revision)
    except Exception as exc:
        fail(describe_failure(exc, settings))
    change = "up to date" if before == after else f"was {before or 'empty'}"
    console.print(f"schema at [bold]{after}[/bold] ({change})")


@admin_key_app.command("create")
def admin_key_create(
    name: Annotated[str, typer.Option(help="who uses it")] = "admin",
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only", help="may only read: no console actions, admin API writes refused"
        ),
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Create an admin key and print it (shown only this once)."""
    from assign.services import catalog

    key = run(lambda ctx: catalog.create_admin_key(ctx, name=name, read_only=read_only))
    if as_json:
        print_json({"name": name, "key": key, "read_only": read_only})
        return
    err.print("admin key (shown only this once):")
    print(key)


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored password under ASSIGN_SECRET_KEY (older keys in
    ASSIGN_OLD_SECRET_KEYS are still read). Safe while the service runs."""
    from assign.services import secrets

    reports = run(secrets.rotate)
    table = Table("table", "values scanned", "re-encrypted")
    for name, report in reports.items():
        table.add_row(name, str(report.scanned), str(report.rotated))
    console.print(table)


@app.command()
def stats(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """Links, requests and servers counted by state."""
    from assign.services import stats as stats_service

    data = run(stats_service.overview)
    if as_json:
        print_json(data)
        return
    for section, counts in data.items():
        table = Table(section, "count")
        for k, v in sorted(counts.items()):
            table.add_row(k, str(v))
        console.print(table)


@app.command()
def explain(
    link_id: Annotated[str, typer.Argument(help="id of the link")],
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as JSON")] = False,
) -> None:
    """Why a link is waiting, judged by the dispatcher's own rules."""
    import uuid

    import orjson

    from assign.errors import NotFound
    from assign.services import explain as explain_service

    try:
        parsed = uuid.UUID(link_id)
    except ValueError:
        err.print(f"{link_id!r} is not a link id (a UUID); give one from GET /links.")
        raise typer.Exit(1) from None
    try:
        data = run(lambda ctx: explain_service.explain_link(ctx, link_id=parsed))
    except NotFound:
        err.print(f"No link {parsed}: check the id.")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps(data, option=orjson.OPT_UTC_Z).decode())
        return
    until = data.get("until")
    console.print(f"status: {data['status']}")
    console.print(
        f"reason: {data['reason'] or '-'}" + (f" until {until.isoformat()}" if until else "")
    )
    console.print(data["detail"], markup=False)


@app.command()
def demo(
    links: Annotated[int, typer.Option(min=20, help="links in all campaigns")] = 2000,
    servers: Annotated[int, typer.Option(min=2, help="simulated tool servers (one dies)")] = 6,
    accounts: Annotated[int, typer.Option(min=8, help="posting accounts")] = 100,
    fail_rate: Annotated[float, typer.Option(min=0, max=0.9, help="share of links failing")] = 0.1,
    task_seconds: Annotated[
        float, typer.Option(min=0.01, help="mean simulated work per link, seconds")
    ] = 0.4,
    cooldown_seconds: Annotated[
        float, typer.Option(min=0, help="rate limit: seconds between two posts of an account")
    ] = 0.25,
    timeout: Annotated[float, typer.Option(min=1, help="give up after this many seconds")] = 300,
    database_url: Annotated[
        str | None, typer.Option(help="database to use; default: SQLite in a temporary directory")
    ] = None,
    port: Annotated[int, typer.Option(min=0, help="port of the service; 0: any free one")] = 0,
    seed: Annotated[int | None, typer.Option(help="random seed of the simulation")] = None,
) -> None:
    """A simulated fleet end to end: the service and its dispatcher, tool servers (one dies),
    campaigns of thousands of links, live progress, then a summary."""
    from assign.demo import run as demo_run

    config = demo_run.DemoConfig(
        links=links,
        servers=servers,
        accounts=accounts,
        fail_rate=fail_rate,
        task_seconds=task_seconds,
        cooldown_seconds=cooldown_seconds,
        timeout=timeout,
        database_url=database_url,
        port=port or None,
        seed=seed,
    )
    try:
        summary = demo_run.main(config, console)
    except demo_run.service.ServiceError as exc:
        fail(str(exc))
    if not summary.finished:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
