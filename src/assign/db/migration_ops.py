"""What the migrations share, written once.

A migration is history: whenever it runs it must build the same schema. Nothing here may change
what an existing migration emits; a new shape is a new function.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_partial_index(name: str, table: str, columns: list[str], where: str) -> None:
    """An index of the rows matching ``where`` only, on PostgreSQL and SQLite alike."""
    op.create_index(
        name, table, columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where)
    )
