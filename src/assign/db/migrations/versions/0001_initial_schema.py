"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 20:24:20.324546
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import assign.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=True),
        sa.Column("password_enc", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index("ix_accounts_group_id_status", ["group_id", "status"], unique=False)

    op.create_table(
        "admin_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_admin_keys_key_hash")),
    )
    op.create_table(
        "dispatcher_lease",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("expires_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dispatcher_lease")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("service_type", sa.String(length=50), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("website", sa.String(length=2000), nullable=True),
        sa.Column("auction_price", sa.Float(), nullable=True),
        sa.Column("target", sa.Integer(), nullable=True),
        sa.Column("created_links", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("type_request", sa.String(length=50), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "folder_urls",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("started_at", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_requests_status_priority_created_at",
            ["status", "priority", "created_at"],
            unique=False,
        )

    op.create_table(
        "servers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=100), nullable=True),
        sa.Column("service", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("active_threads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active_tasks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_threads", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "service_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        sa.Column("last_health_check", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_active", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("active_tasks >= 0", name=op.f("ck_servers_active_tasks_nonnegative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_servers_api_key_hash")),
    )
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.create_index("ix_servers_status_priority", ["status", "priority"], unique=False)

    op.create_table(
        "settings",
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group", "key", name=op.f("pk_settings")),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
    )
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.create_index("ix_sites_type_active", ["type", "active"], unique=False)

    op.create_table(
        "links",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("service_type", sa.String(length=50), nullable=False),
        sa.Column("server_id", sa.Uuid(), nullable=True),
        sa.Column("site_id", sa.Uuid(), nullable=True),
        sa.Column("site_name", sa.String(length=500), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("username", sa.String(length=200), nullable=True),
        sa.Column("password_enc", sa.LargeBinary(), nullable=True),
        sa.Column("about", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("phase", sa.String(length=10), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("profile_url", sa.String(length=2000), nullable=True),
        sa.Column("post_url", sa.String(length=2000), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("retry_at", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("assigned_at", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", assign.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", assign.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            name=op.f("fk_links_request_id_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_links_server_id_servers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_links_email_status_completed_at", ["email", "status", "completed_at"], unique=False
        )
        batch_op.create_index("ix_links_request_id_status", ["request_id", "status"], unique=False)
        batch_op.create_index("ix_links_server_id_status", ["server_id", "status"], unique=False)
        batch_op.create_index(
            "ix_links_status_priority_created_at",
            ["status", sa.text("priority DESC"), "created_at"],
            unique=False,
        )

    settings = sa.table(
        "settings",
        sa.column("group", sa.String),
        sa.column("key", sa.String),
        sa.column("value", sa.Text),
        sa.column("updated_at", assign.db.types.UTCDateTime()),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        settings,
        [
            {"group": "rate_limit", "key": "max_posts_per_day", "value": "50", "updated_at": now},
            {"group": "rate_limit", "key": "cooldown_minutes", "value": "5", "updated_at": now},
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_status_priority_created_at")
        batch_op.drop_index("ix_links_server_id_status")
        batch_op.drop_index("ix_links_request_id_status")
        batch_op.drop_index("ix_links_email_status_completed_at")

    op.drop_table("links")
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_index("ix_sites_type_active")

    op.drop_table("sites")
    op.drop_table("settings")
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index("ix_servers_status_priority")

    op.drop_table("servers")
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_status_priority_created_at")

    op.drop_table("requests")
    op.drop_table("idempotency_keys")
    op.drop_table("dispatcher_lease")
    op.drop_table("admin_keys")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_accounts_group_id_status")

    op.drop_table("accounts")
