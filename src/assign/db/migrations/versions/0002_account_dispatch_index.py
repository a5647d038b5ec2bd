"""index of each account's dispatches, for the dispatcher's cooldown

Revision ID: 0002
Revises: 0001

The cooldown asks for each account's latest ``assigned_at``; links never dispatched have none
and stay out of the index.
"""

from assign.db import migration_ops

revision, down_revision = "0002", "0001"

ACCOUNT_DISPATCHES = migration_ops.Index(
    "ix_links_email_assigned_at", "links", ["email", "assigned_at"], where="assigned_at IS NOT NULL"
)


def upgrade() -> None:
    ACCOUNT_DISPATCHES.create()


def downgrade() -> None:
    ACCOUNT_DISPATCHES.drop()
