"""accounts unique by (group_id, lower-cased email)

Revision ID: 0004
Revises: 0003

An email in another case is the same account: a create or change that would repeat one in its
group is refused (a 409, see services.catalog).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from assign.db import migration_ops

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIQUE_EMAILS = migration_ops.Index(
    "uq_accounts_group_id_lower_email",
    "accounts",
    ["group_id", sa.text("lower(email)")],
    unique=True,
)


def upgrade() -> None:
    UNIQUE_EMAILS.create()


def downgrade() -> None:
    UNIQUE_EMAILS.drop()
