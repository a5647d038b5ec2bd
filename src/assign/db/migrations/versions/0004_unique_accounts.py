"""accounts unique by (group_id, lower-cased email)

Revision ID: 0004
Revises: 0003

An email in another case is the same account: a create or change that would repeat one in its
group is refused (a 409, see services.catalog).
"""

import sqlalchemy as sa

from assign.db import migration_ops

revision, down_revision = "0004", "0003"

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
