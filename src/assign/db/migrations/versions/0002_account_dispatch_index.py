"""index of each account's dispatches, for the dispatcher's cooldown

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_links_email_assigned_at",
        "links",
        ["email", "assigned_at"],
        postgresql_where=sa.text("assigned_at IS NOT NULL"),
        sqlite_where=sa.text("assigned_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_links_email_assigned_at", table_name="links")
