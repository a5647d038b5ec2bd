"""``assign admin-key list | revoke`` (``create`` lives with the other key-printing commands)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assign.cli_commands.common import (
    CommandFailed,
    err,
    print_json,
    print_rows,
    run,
)
from assign.cli_commands.servers import JSON_OPTION, parse_id

admin_key_app = typer.Typer(help="Manage admin keys.", no_args_is_help=True)


@admin_key_app.command("list")
def admin_key_list(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """List admin keys (ids, names, creation times; never the keys)."""
    from assign.services import admin_keys

    rows = run(admin_keys.list_admin_keys)
    if as_json:
        print_json(rows)
        return
    headers = list(rows[0]) if rows else ["id", "name", "created_at"]
    print_rows(headers, [[r[h] for h in headers] for r in rows])


@admin_key_app.command("revoke")
def admin_key_revoke(key_id: Annotated[str, typer.Argument(help="the key's id")]) -> None:
    """Revoke an admin key (other API processes stop accepting it within
    ASSIGN_KEY_CACHE_SECONDS)."""
    from assign.errors import NotFound
    from assign.services import admin_keys

    kid = parse_id(key_id, "admin key")

    async def work(ctx: Any) -> None:
        try:
            await admin_keys.revoke_admin_key(ctx, key_id=kid)
        except NotFound:
            raise CommandFailed(
                "no admin key has that id: `assign admin-key list` shows the ids"
            ) from None

    run(work)
    err.print(f"admin key {kid} revoked")
