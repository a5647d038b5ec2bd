"""Re-encryption of every stored secret under the current key (``assign secrets rotate``).

Runs while the service runs: batches of rows, each batch one short transaction, and each row
replaced only if it still holds the value read (compare-and-set), so concurrent writes win.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa

from assign.db.tables import accounts, idempotency_keys, links
from assign.services.context import Context

BATCH = 1000


@dataclass
class RotationReport:
    scanned: int = 0
    rotated: int = 0


async def rotate(ctx: Context, *, batch: int = BATCH) -> dict[str, RotationReport]:
    """Re-encrypt values under older keys with the current one; counts per table."""
    out = {}
    for table, pk, column in (
        (links, links.c.id, links.c.password_enc),
        (accounts, accounts.c.id, accounts.c.password_enc),
        (idempotency_keys, None, idempotency_keys.c.response),
    ):
        out[table.name] = await _rotate_table(ctx, table, pk, column, batch)
    return out


async def _rotate_table(
    ctx: Context, table: sa.Table, pk: sa.Column | None, column: sa.Column, batch: int
) -> RotationReport:
    report = RotationReport()
    keys = [pk] if pk is not None else [table.c.principal, table.c.key]
    last: tuple | None = None
    while True:
        query = sa.select(*keys, column).where(column.is_not(None)).order_by(*keys).limit(batch)
        if last is not None:
            query = query.where(sa.tuple_(*keys) > sa.tuple_(*last))
        async with ctx.db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return report
        last = tuple(rows[-1][: len(keys)])
        report.scanned += len(rows)
        changes = []
        for row in rows:
            old = row[-1]
            if old is None or ctx.cipher.is_current(old):
                continue
            changes.append({**{f"k{i}": row[i] for i in range(len(keys))}, "old": old,
                            "new": ctx.cipher.encrypt(ctx.cipher.decrypt(old))})  # fmt: skip
        if changes:
            condition = sa.and_(*(k == sa.bindparam(f"k{i}") for i, k in enumerate(keys)))
            statement = (
                table.update()
                .where(condition, column == sa.bindparam("old"))
                .values({column.name: sa.bindparam("new")})
            )
            await ctx.db.run(partial(_execute, statement, changes))
            report.rotated += len(changes)


async def _execute(statement: Any, rows: list[dict[str, Any]], conn: Any) -> None:
    await conn.execute(statement, rows)
