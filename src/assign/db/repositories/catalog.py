"""SQL for sites, accounts, settings and admin keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import by_id
from assign.db.tables import accounts, admin_keys, settings, sites


async def insert_site(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(sites.insert().values(**values).returning(sites))).one()


async def list_sites(
    conn: AsyncConnection,
    *,
    site_type: str | None,
    active: bool | None,
    ids: Sequence[uuid.UUID] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Sites matching the filters, by name."""
    query = sa.select(sites)
    if site_type:
        query = query.where(sites.c.type == site_type)
    if active is not None:
        query = query.where(sites.c.active == active)
    if ids is not None:
        query = query.where(sites.c.id.in_(ids))
    return (await conn.execute(query.order_by(sites.c.name, sites.c.id).limit(limit))).all()


async def existing_site_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The ids among ``ids`` of sites that exist."""
    unique = sorted(set(ids))
    found: set[uuid.UUID] = set()
    for start in range(0, len(unique), 1000):
        rows = await conn.execute(
            sa.select(sites.c.id).where(sites.c.id.in_(unique[start : start + 1000]))
        )
        found.update(r.id for r in rows)
    return found


async def update_site(
    conn: AsyncConnection, site_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any] | None:
    return await by_id.update(conn, sites, site_id, values)


async def insert_account(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(accounts.insert().values(**values).returning(accounts))).one()


async def list_accounts(
    conn: AsyncConnection, *, group_id: uuid.UUID | None, status: Sequence[str] | None, limit: int
) -> Sequence[Row[Any]]:
    """Accounts of a group (all groups when None), by email."""
    query = sa.select(accounts)
    if group_id is not None:
        query = query.where(accounts.c.group_id == group_id)
    if status:
        query = query.where(accounts.c.status.in_(status))
    return (await conn.execute(query.order_by(accounts.c.email, accounts.c.id).limit(limit))).all()


async def update_account(
    conn: AsyncConnection, account_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any] | None:
    return await by_id.update(conn, accounts, account_id, values)


async def get_settings(conn: AsyncConnection, group: str) -> dict[str, str]:
    """{key: value} of one settings group ({} when unknown)."""
    rows = await conn.execute(
        sa.select(settings.c.key, settings.c.value)
        .where(settings.c.group == group)
        .order_by(settings.c.key)
    )
    return {r.key: r.value for r in rows}


async def list_setting_groups(conn: AsyncConnection) -> dict[str, dict[str, str]]:
    rows = await conn.execute(sa.select(settings).order_by(settings.c.group, settings.c.key))
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        out.setdefault(r.group, {})[r.key] = r.value
    return out


async def put_settings(
    conn: AsyncConnection, group: str, values: dict[str, str], now: datetime
) -> None:
    """Insert or replace keys of a group (portable upsert: delete then insert)."""
    if not values:
        return
    await conn.execute(
        settings.delete().where(settings.c.group == group, settings.c.key.in_(list(values)))
    )
    await conn.execute(
        settings.insert(),
        [{"group": group, "key": k, "value": v, "updated_at": now} for k, v in values.items()],
    )


async def insert_admin_key(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(admin_keys.insert().values(**values))


async def admin_key_read_only(conn: AsyncConnection, key_hash: str) -> bool | None:
    """Whether the admin key with this digest is read-only; None when there is no such key."""
    query = sa.select(admin_keys.c.read_only).where(admin_keys.c.key_hash == key_hash)
    row = (await conn.execute(query)).first()
    return None if row is None else bool(row.read_only)
