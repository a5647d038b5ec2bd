"""What the migrations share, written once.

A migration is history: whenever it runs it must build the same schema. Nothing here may change
what an existing migration emits; a new shape is a new function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op


@dataclass(frozen=True)
class Index:
    """An index that a revision adds: its upgrade creates it, its downgrade drops it."""

    name: str
    table: str
    columns: Sequence[str | sa.TextClause]
    unique: bool = False
    #: a partial index: only the rows matching this condition, on PostgreSQL and SQLite alike
    where: str | None = None
    #: PostgreSQL's included columns; SQLite has none, there the index is on ``columns`` alone
    include: Sequence[str] = ()

    def create(self) -> None:
        options: dict[str, Any] = {}
        if self.unique:
            options["unique"] = True
        if self.include:
            options["postgresql_include"] = list(self.include)
        if self.where is not None:
            options["postgresql_where"] = sa.text(self.where)
            options["sqlite_where"] = sa.text(self.where)
        op.create_index(self.name, self.table, list(self.columns), **options)

    def drop(self) -> None:
        op.drop_index(self.name, table_name=self.table)


def replace_index(old: Index, new: Index) -> None:
    """``new`` in place of ``old``, built before ``old`` is dropped: the statements of the release
    still serving meanwhile always have one of the two."""
    new.create()
    old.drop()


def create_partial_index(name: str, table: str, columns: list[str], where: str) -> None:
    """An index of the rows matching ``where`` only, on PostgreSQL and SQLite alike."""
    Index(name, table, columns, where=where).create()
