"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 20:24:20.324546
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import assign.db.types

revision, down_revision = "0001", None

#: what a table is made of: its columns and constraints
Elements = tuple[sa.schema.SchemaItem, ...]


#: the primary keys of the tables not keyed by ``id``
KEYS = {
    "dispatcher_lease": ("name",),
    "idempotency_keys": ("principal", "key"),
    "settings": ("group", "key"),
}


def _indexes(table: str) -> dict[str, list[Any]]:
    """The indexes of ``table``, by name."""
    indexes: dict[str, dict[str, list[Any]]] = {
        "accounts": {"ix_accounts_group_id_status": ["group_id", "status"]},
        "requests": {
            "ix_requests_status_priority_created_at": ["status", "priority", "created_at"]
        },
        "servers": {"ix_servers_status_priority": ["status", "priority"]},
        "sites": {"ix_sites_type_active": ["type", "active"]},
        "links": {
            "ix_links_email_status_completed_at": ["email", "status", "completed_at"],
            "ix_links_request_id_status": ["request_id", "status"],
            "ix_links_server_id_status": ["server_id", "status"],
            "ix_links_status_priority_created_at": [
                "status",
                sa.text("priority DESC"),
                "created_at",
            ],
        },
    }
    return indexes.get(table, {})


def _create(table: str, *elements: Any) -> None:
    """``table`` with its primary key ``pk_<table>``, then its indexes."""
    key = sa.PrimaryKeyConstraint(*KEYS.get(table, ("id",)), name=op.f(f"pk_{table}"))
    op.create_table(table, *elements, key)
    indexes = _indexes(table)
    if indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, columns in indexes.items():
                batch_op.create_index(name, columns, unique=False)


def _drop(table: str) -> None:
    """``table``, its indexes first (the last created first)."""
    indexes = _indexes(table)
    if indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in reversed(indexes):
                batch_op.drop_index(name)
    op.drop_table(table)


def _utc(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, assign.db.types.UTCDateTime(timezone=True), nullable=nullable)


def _timestamps() -> tuple[sa.Column[Any], sa.Column[Any]]:
    return _utc("created_at", nullable=False), _utc("updated_at", nullable=False)


def _json(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    return sa.Column(name, json, nullable=nullable)


# --- each table's columns and constraints but its primary key and indexes (see _create); a
# column is nullable unless it says nullable=False


def _accounts() -> Elements:
    return (
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("username", sa.String(length=200)),
        sa.Column("password_enc", sa.LargeBinary()),
        sa.Column("status", sa.String(length=20), nullable=False),
        *_timestamps(),
    )


def _admin_keys() -> Elements:
    return (
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        _utc("created_at", nullable=False),
        sa.UniqueConstraint("key_hash", name=op.f("uq_admin_keys_key_hash")),
    )


def _dispatcher_lease() -> Elements:
    return (
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        _utc("expires_at", nullable=False),
    )


def _idempotency_keys() -> Elements:
    return (
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("response", sa.LargeBinary()),
        _utc("created_at", nullable=False),
    )


def _requests() -> Elements:
    return (
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid()),
        sa.Column("service_type", sa.String(length=50), nullable=False),
        sa.Column("group_id", sa.Uuid()),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("website", sa.String(length=2000)),
        sa.Column("auction_price", sa.Float()),
        sa.Column("target", sa.Integer()),
        sa.Column("created_links", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("type_request", sa.String(length=50), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        _json("config"),
        _json("data"),
        _json("folder_urls"),
        _utc("started_at"),
        _utc("completed_at"),
        *_timestamps(),
    )


def _servers() -> Elements:
    return (
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ip", sa.String(length=100)),
        sa.Column("service", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("active_threads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active_tasks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_threads", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        _json("service_types", nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        _utc("last_health_check"),
        _utc("last_active"),
        *_timestamps(),
        sa.CheckConstraint("active_tasks >= 0", name=op.f("ck_servers_active_tasks_nonnegative")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_servers_api_key_hash")),
    )


def _settings() -> Elements:
    return (
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _utc("updated_at", nullable=False),
    )


def _sites() -> Elements:
    return (
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _json("config"),
        *_timestamps(),
    )


def _links() -> Elements:
    return (
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("service_type", sa.String(length=50), nullable=False),
        sa.Column("server_id", sa.Uuid()),
        sa.Column("site_id", sa.Uuid()),
        sa.Column("site_name", sa.String(length=500)),
        sa.Column("email", sa.String(length=320)),
        sa.Column("username", sa.String(length=200)),
        sa.Column("password_enc", sa.LargeBinary()),
        sa.Column("about", sa.Text()),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("phase", sa.String(length=10), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("profile_url", sa.String(length=2000)),
        sa.Column("post_url", sa.String(length=2000)),
        _json("details"),
        _utc("retry_at"),
        _utc("assigned_at"),
        _utc("started_at"),
        _utc("completed_at"),
        *_timestamps(),
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
    )


#: the tables in the order they are created (links last: it refers to requests and servers)
TABLES: dict[str, Callable[[], Elements]] = {
    "accounts": _accounts,
    "admin_keys": _admin_keys,
    "dispatcher_lease": _dispatcher_lease,
    "idempotency_keys": _idempotency_keys,
    "requests": _requests,
    "servers": _servers,
    "settings": _settings,
    "sites": _sites,
    "links": _links,
}


def upgrade() -> None:
    for table, elements in TABLES.items():
        _create(table, *elements())
    _seed_rate_limit()


def _seed_rate_limit() -> None:
    """The default rate limit of posting accounts (50 posts a day, 5 minutes apart)."""
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
    for table in reversed(TABLES):
        _drop(table)
