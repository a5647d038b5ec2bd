"""Use cases of sites, posting accounts, settings and admin keys."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db import tables, views
from assign.db.repositories import by_id
from assign.db.repositories import catalog as repo
from assign.errors import Conflict, NotFound, existing
from assign.security import keys
from assign.services import reads
from assign.services.context import Context


async def create_site(ctx: Context, *, values: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now()
    values = {"id": uuid.uuid4(), "active": True, **values, "created_at": now, "updated_at": now}
    return views.site(await ctx.db.run(lambda conn: repo.insert_site(conn, values)))


list_sites = reads.listing(repo.list_sites, views.site)


async def update_site(
    ctx: Context, *, site_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    values = {**changes, "updated_at": ctx.clock.now()}
    row = await ctx.db.run(lambda conn: repo.update_site(conn, site_id, values))
    return views.site(existing(row, "Site not found"))


async def delete_site(ctx: Context, *, site_id: uuid.UUID) -> None:
    if not await ctx.db.run(lambda conn: by_id.delete(conn, tables.sites, site_id)):
        raise NotFound("Site not found")


def _account_values(ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "password" in out:
        out["password_enc"] = ctx.cipher.encrypt(out.pop("password"))
    return out


DUPLICATE_ACCOUNT = "An account with this email already exists in the group"


async def create_account(ctx: Context, *, values: dict[str, Any]) -> dict[str, Any]:
    """The new account; 409 when the group has one with this email (whatever its case)."""
    now = ctx.clock.now()
    row_values = {"id": uuid.uuid4(), "status": "active", **_account_values(ctx, values)}

    async def work(conn: AsyncConnection) -> Any:
        try:
            return await repo.insert_account(
                conn, {**row_values, "created_at": now, "updated_at": now}
            )
        except IntegrityError:
            raise Conflict(DUPLICATE_ACCOUNT) from None

    return views.account(await ctx.db.run(work))


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

    async def work(conn: AsyncConnection) -> Any:
        try:
            return await repo.update_account(conn, account_id, values)
        except IntegrityError:
            raise Conflict(DUPLICATE_ACCOUNT) from None

    return views.account(existing(await ctx.db.run(work), "Account not found"))


async def delete_account(ctx: Context, *, account_id: uuid.UUID) -> None:
    if not await ctx.db.run(lambda conn: by_id.delete(conn, tables.accounts, account_id)):
        raise NotFound("Account not found")


async def get_settings(ctx: Context, *, group: str) -> dict[str, str]:
    async with ctx.db.read() as conn:
        return await repo.get_settings(conn, group)


async def all_settings(ctx: Context) -> dict[str, dict[str, str]]:
    async with ctx.db.read() as conn:
        return await repo.list_setting_groups(conn)


async def put_settings(ctx: Context, *, group: str, values: dict[str, str]) -> dict[str, str]:
    """Merge keys into a group; the whole group after the change."""
    now = ctx.clock.now()

    async def work(conn: AsyncConnection) -> dict[str, str]:
        await repo.put_settings(conn, group, values, now)
        return await repo.get_settings(conn, group)

    return await ctx.db.run(work)


async def create_admin_key(ctx: Context, *, name: str, read_only: bool = False) -> str:
    """A new admin key (shown once; only its digest is stored); ``read_only`` may only read."""
    key = keys.generate_key()
    values = {
        "id": uuid.uuid4(),
        "name": name,
        "key_hash": keys.hash_key(key),
        "created_at": ctx.clock.now(),
        "read_only": read_only,
    }
    await ctx.db.run(lambda conn: repo.insert_admin_key(conn, values))
    return key


async def admin_key_read_only(ctx: Context, *, key_hash: str) -> bool | None:
    """Whether the stored admin key with this digest is read-only; None when it is no admin key."""
    async with ctx.db.read() as conn:
        return await repo.admin_key_read_only(conn, key_hash)
