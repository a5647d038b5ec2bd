"""The schema: one MetaData with a naming convention, shared by the app and Alembic."""

from __future__ import annotations

import sqlalchemy as sa

from assign.db.types import JSONType, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _table(name: str, *elements: sa.schema.SchemaItem) -> sa.Table:
    """A table of the schema (the one ``metadata``)."""
    return sa.Table(name, metadata, *elements)


#: ``domain.eta.REMAINING`` as the predicate of ``ix_links_remaining_request_id``, sorted as the
#: queries list the statuses (so PostgreSQL sees one condition)
REMAINING_LINKS = "status IN ('connect', 'connecting', 'failed', 'pending', 'queued', 'running')"


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _partial_index(name: str, *columns: str, where: str) -> sa.Index:
    """An index of the rows matching ``where`` only, on PostgreSQL and SQLite alike."""
    return sa.Index(name, *columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


# the rows of the partial indexes, word for word as the migrations wrote them
_UNARCHIVED = "archived_at IS NULL AND completed_at IS NOT NULL"
_DISPATCHED = "assigned_at IS NOT NULL"
_WORKING = "status IN ('connecting', 'running')"
_EXHAUSTED = "status = 'failed' AND retry_count >= max_retries"


servers = _table(
    "servers",
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("ip", sa.String(100)),
    sa.Column("service", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("active_threads", sa.Integer, nullable=False, server_default="0"),
    sa.Column("active_tasks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_threads", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("service_types", JSONType, nullable=False),
    sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("last_health_check", UTCDateTime()),
    sa.Column("last_active", UTCDateTime()),
    *_timestamps(),
    sa.CheckConstraint("active_tasks >= 0", name="active_tasks_nonnegative"),
    sa.Index("ix_servers_status_priority", "status", "priority"),
)

admin_keys = _table(
    "admin_keys",
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # a read-only key: the console shows no actions, the admin API refuses its writes
    sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),
)

requests = _table(
    "requests",
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid()),
    sa.Column("service_type", sa.String(50), nullable=False),
    sa.Column("group_id", sa.Uuid()),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("website", sa.String(2000)),
    sa.Column("auction_price", sa.Float),
    sa.Column("target", sa.Integer),
    sa.Column("created_links", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("type_request", sa.String(50), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("config", JSONType),
    sa.Column("data", JSONType),
    sa.Column("folder_urls", JSONType),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    *_timestamps(),
    # when its links were moved to links_archive (migration 0007; see services.retention)
    sa.Column("archived_at", UTCDateTime()),
    sa.Index("ix_requests_status_priority_created_at", "status", "priority", "created_at"),
    _partial_index("ix_requests_completed_at_unarchived", "completed_at", where=_UNARCHIVED),
)

links = _table(
    "links",
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column(
        "request_id",
        sa.Uuid(),
        sa.ForeignKey("requests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("service_type", sa.String(50), nullable=False),
    sa.Column("server_id", sa.Uuid(), sa.ForeignKey("servers.id", ondelete="SET NULL")),
    sa.Column("site_id", sa.Uuid()),
    sa.Column("site_name", sa.String(500)),
    sa.Column("email", sa.String(320)),
    sa.Column("username", sa.String(200)),
    sa.Column("password_enc", sa.LargeBinary),
    sa.Column("about", sa.Text),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("phase", sa.String(10), nullable=False),
    # the request's priority, copied so one index orders the dispatch queue
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_retries", sa.Integer, nullable=False, server_default="3"),
    sa.Column("error", sa.Text),
    sa.Column("profile_url", sa.String(2000)),
    sa.Column("post_url", sa.String(2000)),
    sa.Column("details", JSONType),
    # earliest time a failed link may be retried (back-off)
    sa.Column("retry_at", UTCDateTime()),
    sa.Column("assigned_at", UTCDateTime()),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    *_timestamps(),
    # dispatch queue and GET /links?status=X, in dispatch order: request priority, age, id
    sa.Index(
        "ix_links_status_priority_created_at_id",
        "status",
        sa.text("priority DESC"),
        "created_at",
        "id",
    ),
    # per-request look-ups by status (connect, complete, completable, retries), and a request's
    # links page by page: each (request, status) range in id order (link_sets.page)
    sa.Index("ix_links_request_id_status_id", "request_id", "status", "id"),
    # a server's work: claim, release, lost servers
    sa.Index("ix_links_server_id_status", "server_id", "status"),
    # account stats and rate limits
    sa.Index("ix_links_email_status_completed_at", "email", "status", "completed_at"),
    # an account's last dispatch (cooldown); links never dispatched are not in it
    _partial_index("ix_links_email_assigned_at", "email", "assigned_at", where=_DISPATCHED),
    # stale links (dispatcher step 2, GET /links?stale=true): only links being worked on;
    # statuses in the order the queries list them, so the planner sees one condition
    _partial_index("ix_links_working_started_at", "started_at", where=_WORKING),
    # failed links with no retry left (dispatcher step 4): empty between ticks
    _partial_index("ix_links_exhausted_request_id", "request_id", where=_EXHAUSTED),
    # a request's links still to be done with their account (the ETA's sample, index-only on
    # PostgreSQL; migration 0008): grows with the work left, not with the history
    sa.Index(
        "ix_links_remaining_request_id",
        "request_id",
        postgresql_include=["email"],
        postgresql_where=sa.text(REMAINING_LINKS),
        sqlite_where=sa.text(REMAINING_LINKS),
    ),
)

sites = _table(
    "sites",
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("type", sa.String(50), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("config", JSONType),
    *_timestamps(),
    sa.Index("ix_sites_type_active", "type", "active"),
)

accounts = _table(
    "accounts",
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("group_id", sa.Uuid(), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("username", sa.String(200)),
    sa.Column("password_enc", sa.LargeBinary),
    sa.Column("status", sa.String(20), nullable=False),
    *_timestamps(),
    sa.Index("ix_accounts_group_id_status", "group_id", "status"),
)
# an account is one (group, email), whatever the case of the email
sa.Index(
    "uq_accounts_group_id_lower_email",
    accounts.c.group_id,
    sa.func.lower(accounts.c.email),
    unique=True,
)

settings = _table(
    "settings",
    sa.Column("group", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

idempotency_keys = _table(
    "idempotency_keys",
    sa.Column("principal", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response", sa.LargeBinary),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

dispatcher_lease = _table(
    "dispatcher_lease",
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# --- history, written by triggers on links (migration 0005) -----------------------------------

#: one row per claim of a link, ended by its next transition (see docs/guarantees.md)
attempts = _table(
    "attempts",
    sa.Column("link_id", sa.Uuid(), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(10), nullable=False),
    sa.Column("server_id", sa.Uuid()),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("outcome", sa.String(10)),
    sa.Column("error", sa.Text),
    sa.Column("profile_url", sa.String(2000)),
    sa.Column("post_url", sa.String(2000)),
    # pruning by age; rows arrive in start order, so a BRIN index is enough on PostgreSQL
    sa.Index("ix_attempts_started_at", "started_at", postgresql_using="brin"),
)

#: completions and failures per minute, by server (``kind`` 'server') and by request; rows of
#: differences appended by the triggers, summed by readers, folded together by the leader
throughput = _table(
    "throughput",
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("minute", UTCDateTime(), nullable=False),
    sa.Column("key", sa.Uuid(), nullable=False),
    sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_throughput_kind_minute_key", "kind", "minute", "key"),
)

#: links by (request, status), as rows of differences like ``throughput``
link_counts = _table(
    "link_counts",
    sa.Column("request_id", sa.Uuid(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Index("ix_link_counts_request_id_status", "request_id", "status"),
)

# console sessions: the cookie holds a random id, only its SHA-256 digest is stored here
ui_sessions = _table(
    "ui_sessions",
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    # a one-line notice shown once on the next page (what the last action did)
    sa.Column("flash", sa.Text),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_ui_sessions_expires_at", "expires_at"),
)

# the acting dispatcher and the time of its last full tick (one row, shown by the console)
dispatcher_ticks = _table(
    "dispatcher_ticks",
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("ticked_at", UTCDateTime(), nullable=False),
)


# --- retention (migration 0007) -----------------------------------------------------------------

#: the columns a link keeps once archived: all but its password
ARCHIVED_COLUMNS = tuple(c.name for c in links.columns if c.name != "password_enc")

#: links of requests closed longer than ASSIGN_ARCHIVE_AFTER_DAYS ago, moved out of ``links``
#: (no password, no foreign key: their servers may be gone); read where answers count them
links_archive = _table(
    "links_archive",
    *(
        sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in links.columns
        if c.name in ARCHIVED_COLUMNS
    ),
    sa.Column("archived_at", UTCDateTime(), nullable=False),
    sa.Index("ix_links_archive_request_id_status", "request_id", "status"),
    sa.Index("ix_links_archive_email_completed_at", "email", "completed_at"),
)
