"""retention: links_archive, requests.archived_at, autovacuum settings of the hot tables

Revision ID: 0007
Revises: 0006

* ``links_archive``: the links of requests closed longer than ``ASSIGN_ARCHIVE_AFTER_DAYS`` ago,
  moved out of ``links`` by the leading dispatcher (services.retention), without their password.
  The hot table then holds what is live and recent, so its indexes, the tick's statements and
  ``GET /links`` do not grow with the history.
* ``requests.archived_at``: when a request's links were moved; the partial index finds the next
  requests due without reading the archived ones.
* Autovacuum, tuned for the two tables every transition writes. PostgreSQL's defaults vacuum a
  table once a fifth of it is dead (``autovacuum_vacuum_scale_factor`` 0.2): at ten million links
  that is two million dead tuples before a vacuum, and every index scan of the dispatcher wades
  through them meanwhile. ``links``: vacuum at 2 % dead, analyze at 1 % changed (the planner's
  view of pending/queued counts drifts fast), vacuum after inserts at 5 % (PostgreSQL 13+: keeps
  the visibility map current for index-only scans of new links), and no cost delay so a vacuum
  keeps up with a busy fleet. ``servers``: a few hundred rows updated on every heartbeat,
  claim and result, so a dead version per update: vacuum every 200 dead rows whatever the
  size, and ``fillfactor`` 50 so updates stay HOT (in the same page, no index upkeep).
  SQLite has no such settings.
"""

import sqlalchemy as sa
from alembic import op

from assign.db import migration_ops
from assign.db.dialect import bind_name
from assign.db.types import JSONType, UTCDateTime

revision, down_revision = "0007", "0006"

LINKS_OPTIONS = (
    "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.01, "
    "autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0"
)
SERVERS_OPTIONS = (
    "fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200, "
    "autovacuum_analyze_scale_factor = 0.05"
)
UNARCHIVED = "archived_at IS NULL AND completed_at IS NOT NULL"

#: the columns of ``links`` as of this revision but for its password, then ``archived_at``:
#: (name, type, nullable); no defaults and no foreign keys (an archived link's server may be gone)
ARCHIVE_COLUMNS = (
    ("id", sa.Uuid(), False),
    ("request_id", sa.Uuid(), False),
    ("service_type", sa.String(50), False),
    ("server_id", sa.Uuid(), True),
    ("site_id", sa.Uuid(), True),
    ("site_name", sa.String(500), True),
    ("email", sa.String(320), True),
    ("username", sa.String(200), True),
    ("about", sa.Text(), True),
    ("status", sa.String(20), False),
    ("phase", sa.String(10), False),
    ("priority", sa.Integer(), False),
    ("retry_count", sa.Integer(), False),
    ("max_retries", sa.Integer(), False),
    ("error", sa.Text(), True),
    ("profile_url", sa.String(2000), True),
    ("post_url", sa.String(2000), True),
    ("details", JSONType, True),
    ("retry_at", UTCDateTime(), True),
    ("assigned_at", UTCDateTime(), True),
    ("started_at", UTCDateTime(), True),
    ("completed_at", UTCDateTime(), True),
    ("created_at", UTCDateTime(), False),
    ("updated_at", UTCDateTime(), False),
    ("archived_at", UTCDateTime(), False),
)


def upgrade() -> None:
    op.create_table(
        "links_archive",
        *(sa.Column(name, type_, nullable=nullable) for name, type_, nullable in ARCHIVE_COLUMNS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links_archive")),
    )
    op.create_index("ix_links_archive_request_id_status", "links_archive", ["request_id", "status"])
    op.create_index(
        "ix_links_archive_email_completed_at", "links_archive", ["email", "completed_at"]
    )
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("archived_at", UTCDateTime()))
    migration_ops.create_partial_index(
        "ix_requests_completed_at_unarchived", "requests", ["completed_at"], UNARCHIVED
    )
    if bind_name(op.get_bind()) == "postgresql":
        op.execute(f"ALTER TABLE links SET ({LINKS_OPTIONS})")
        op.execute(f"ALTER TABLE servers SET ({SERVERS_OPTIONS})")


def downgrade() -> None:
    if bind_name(op.get_bind()) == "postgresql":
        for table, options in (("links", LINKS_OPTIONS), ("servers", SERVERS_OPTIONS)):
            names = ", ".join(part.split("=")[0].strip() for part in options.split(","))
            op.execute(f"ALTER TABLE {table} RESET ({names})")
    op.drop_index("ix_requests_completed_at_unarchived", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("archived_at")
    op.drop_index("ix_links_archive_email_completed_at", table_name="links_archive")
    op.drop_index("ix_links_archive_request_id_status", table_name="links_archive")
    op.drop_table("links_archive")
