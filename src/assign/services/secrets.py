"""Re-encryption of every stored secret under the current key (``assign secrets rotate``).

Runs while the service runs: batches of rows, each batch one short transaction, and each row
replaced only if it still holds the value read (compare-and-set), so concurrent writes win.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import sqlalchemy as sa

from assign.db.repositories import secrets as repo
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
        async with ctx.db.read() as conn:
            rows = await repo.read_batch(conn, keys=keys, column=column, after=last, limit=batch)
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
            write = partial(
                repo.replace_values, table=table, keys=keys, column=column, changes=changes
            )
            await ctx.db.run(write)
            report.rotated += len(changes)
