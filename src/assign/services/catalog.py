"""Use cases of sites, posting accounts, settings and admin keys."""

from __future__ import annotations

import uuid
from typing import Any

from assign.db import tables, views
from assign.db.repositories import catalog as repo
from assign.errors import NotFound
from assign.security import keys
from assign.services.context import Context


async def create_site(ctx: Context, *, values: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now()
    async with ctx.db.transaction() as conn:
        row = await repo.insert_site(
            conn,
            {"id": uuid.uuid4(), "active": True, **values, "created_at": now, "updated_at": now},
        )
    return views.site(row)


async def list_sites(
    ctx: Context,
    *,
    site_type: str | None,
    active: bool | None,
    ids: list[uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        rows = await repo.list_sites(conn, site_type=site_type, active=active, ids=ids, limit=limit)
    return [views.site(r) for r in rows]


async def update_site(
    ctx: Context, *, site_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    async with ctx.db.transaction() as conn:
        row = await repo.update_site(conn, site_id, {**changes, "updated_at": ctx.clock.now()})
    if row is None:
        raise NotFound("Site not found")
    return views.site(row)


async def delete_site(ctx: Context, *, site_id: uuid.UUID) -> None:
    async with ctx.db.transaction() as conn:
        if not await repo.delete_row(conn, tables.sites, site_id):
            raise NotFound("Site not found")


def _account_values(ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "password" in out:
        out["password_enc"] = ctx.cipher.encrypt(out.pop("password"))
    return out


async def create_account(ctx: Context, *, values: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now()
    row_values = {"id": uuid.uuid4(), "status": "active", **_account_values(ctx, values)}
    async with ctx.db.transaction() as conn:
        row = await repo.insert_account(conn, {**row_values, "created_at": now, "updated_at": now})
    return views.account(row)


async def list_accounts(
    ctx: Context,
    *,
    group_id: uuid.UUID | None,
    statuses: list[str] | None,
    limit: int,
    with_password: bool,
) -> list[dict[str, Any]]:
    """Accounts of a group; ``with_password`` adds the decrypted password (assign key only)."""
    async with ctx.db.read() as conn:
        rows = await repo.list_accounts(conn, group_id=group_id, status=statuses, limit=limit)
    out = []
    for row in rows:
        item = views.account(row)
        if with_password:
            item["password"] = ctx.cipher.decrypt(row.password_enc)
        out.append(item)
    return out


async def update_account(
    ctx: Context, *, account_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    values = _account_values(ctx, changes) | {"updated_at": ctx.clock.now()}
    async with ctx.db.transaction() as conn:
        row = await repo.update_account(conn, account_id, values)
    if row is None:
        raise NotFound("Account not found")
    return views.account(row)


async def delete_account(ctx: Context, *, account_id: uuid.UUID) -> None:
    async with ctx.db.transaction() as conn:
        if not await repo.delete_row(conn, tables.accounts, account_id):
            raise NotFound("Account not found")


async def get_settings(ctx: Context, *, group: str) -> dict[str, str]:
    async with ctx.db.read() as conn:
        return await repo.get_settings(conn, group)


async def all_settings(ctx: Context) -> dict[str, dict[str, str]]:
    async with ctx.db.read() as conn:
        return await repo.list_setting_groups(conn)


async def put_settings(ctx: Context, *, group: str, values: dict[str, str]) -> dict[str, str]:
    """Merge keys into a group; the whole group after the change."""
    async with ctx.db.transaction() as conn:
        await repo.put_settings(conn, group, values, ctx.clock.now())
        return await repo.get_settings(conn, group)


async def create_admin_key(ctx: Context, *, name: str, read_only: bool = False) -> str:
    """A new admin key (shown once; only its digest is stored); ``read_only`` may only read."""
    key = keys.generate_key()
    async with ctx.db.transaction() as conn:
        await repo.insert_admin_key(
            conn,
            {
                "id": uuid.uuid4(),
                "name": name,
                "key_hash": keys.hash_key(key),
                "created_at": ctx.clock.now(),
                "read_only": read_only,
            },
        )
    return key


async def admin_key_read_only(ctx: Context, *, key_hash: str) -> bool | None:
    """Whether the stored admin key with this digest is read-only; None when it is no admin key."""
    async with ctx.db.read() as conn:
        return await repo.admin_key_read_only(conn, key_hash)
