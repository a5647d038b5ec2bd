"""the operator console: sessions, read-only admin keys, the dispatcher's last tick

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import assign.db.types

UTCDateTime = assign.db.types.UTCDateTime

revision, down_revision = "0006", "0005"


def upgrade() -> None:
    with op.batch_alter_table("admin_keys") as batch:
        batch.add_column(
            sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "ui_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("flash", sa.Text()),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_ui_sessions")),
    )
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])
    op.create_table(
        "dispatcher_ticks",
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("holder", sa.String(100), nullable=False),
        sa.Column("ticked_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dispatcher_ticks")),
    )


def downgrade() -> None:
    op.drop_table("dispatcher_ticks")
    op.drop_index("ix_ui_sessions_expires_at", table_name="ui_sessions")
    op.drop_table("ui_sessions")
    with op.batch_alter_table("admin_keys") as batch:
        batch.drop_column("read_only")
