"""history: attempts, per-minute throughput and link counts, kept by triggers on ``links``

Revision ID: 0005
Revises: 0004

Three tables written by the database itself, in the statement that changes ``links``, whatever
code ran it (API, dispatcher, console, a hand-written UPDATE):

* ``attempts``: one row per claim of a link (``queued -> running``, ``connect -> connecting``),
  ended by the next status change of a running/connecting link, with its outcome.
* ``throughput``: completions and failures per minute, by server and by request.
* ``link_counts``: links by (request, status), so counts never scan ``links``.

``throughput`` and ``link_counts`` are append-only: each statement adds rows of differences,
readers sum them, and the leading dispatcher folds them together every few seconds
(``history.compact``). An upsert of one row per (request, status) would serialise every
transaction touching a request on that row, held from the links update to the commit, and
deadlock a claim (server row, then the count) with a result of the same server (the count, then
the server row); an insert takes no lock another writer waits for.

On PostgreSQL each trigger is statement-level with transition tables: one set-based statement
per changed statement of ``links``, however many rows it touched (COPY fires the INSERT one). On
SQLite they are row triggers (a single writer; no transition tables). The outcome rules are in
docs/guarantees.md ("History is written by the database").
"""

import textwrap

import sqlalchemy as sa
from alembic import op

from assign.db.dialect import bind_name
from assign.db.types import UTCDateTime

revision, down_revision = "0005", "0004"


def _outcome(status: str, error: str) -> str:
    """The outcome of an attempt ended by a move from running/connecting to ``status`` (the
    link's new status and error, as the trigger names them); the same on both databases."""
    return f"""CASE
      WHEN {status} = 'completed' THEN 'completed'
      WHEN {status} = 'canceled' THEN 'canceled'
      WHEN {status} IN ('pending', 'queued', 'connect') THEN 'lost'
      WHEN {error} LIKE 'stale%' THEN 'stale'
      WHEN {error} LIKE 'server lost%' THEN 'lost'
      ELSE 'failed' END"""


# --- PostgreSQL: statement-level triggers with transition tables -----------------------------

PG_OUTCOME = _outcome("ch.after", "ch.error")


def _trigger_function(name: str, body: str) -> str:
    """``CREATE FUNCTION name()``: a PostgreSQL trigger function running ``body``."""
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{body}
  RETURN NULL;
END $$
"""


#: the throughput rows of the attempts that ended, from ``counted``: by server and by request
THROUGHPUT_ADDED = """INSERT INTO throughput (kind, minute, key, completed, failed)
SELECT kind, minute, key, sum(completed), sum(failed)
FROM (
  SELECT 'server' AS kind, minute, old_server_id AS key, completed, failed
  FROM counted WHERE old_server_id IS NOT NULL
  UNION ALL
  SELECT 'request', minute, request_id, completed, failed FROM counted
) c
GROUP BY kind, minute, key"""

PG_UPDATED = _trigger_function(
    "assign_links_updated",
    f"""  WITH ch AS MATERIALIZED (
    SELECT n.id, n.request_id, o.request_id AS old_request_id, n.server_id,
           o.server_id AS old_server_id, n.phase, o.status AS before, n.status AS after,
           n.error, n.profile_url, n.post_url, n.started_at, n.updated_at
    FROM o JOIN n ON n.id = o.id
    WHERE o.status <> n.status OR o.request_id <> n.request_id
  ),
  started AS (
    INSERT INTO attempts (link_id, number, phase, server_id, started_at)
    SELECT ch.id,
           COALESCE((SELECT max(a.number) FROM attempts a WHERE a.link_id = ch.id), 0) + 1,
           ch.phase, ch.server_id, COALESCE(ch.started_at, ch.updated_at)
    FROM ch
    WHERE ch.before IN ('queued', 'connect') AND ch.after IN ('running', 'connecting')
  ),
  ended AS (
    UPDATE attempts a
    SET finished_at = ch.updated_at, outcome = {PG_OUTCOME},
        error = ch.error, profile_url = ch.profile_url, post_url = ch.post_url
    FROM ch
    WHERE ch.before IN ('running', 'connecting') AND ch.after <> ch.before
      AND a.link_id = ch.id AND a.finished_at IS NULL
  ),
  counted AS (
    SELECT date_trunc('minute', ch.updated_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
           ch.old_server_id, ch.request_id,
           (ch.after = 'completed')::int AS completed, (ch.after <> 'completed')::int AS failed
    FROM ch
    WHERE ch.before IN ('running', 'connecting')
      AND ch.after IN ('completed', 'failed', 'pending', 'queued', 'connect')
  ),
  throughput_added AS (
{textwrap.indent(THROUGHPUT_ADDED, "    ")}
  )
  INSERT INTO link_counts (request_id, status, n)
  SELECT request_id, status, sum(d)
  FROM (
    SELECT old_request_id AS request_id, before AS status, -1 AS d FROM ch
    UNION ALL
    SELECT request_id, after, 1 FROM ch
  ) c
  GROUP BY request_id, status
  HAVING sum(d) <> 0;""",
)

PG_INSERTED = _trigger_function(
    "assign_links_inserted",
    """  INSERT INTO link_counts (request_id, status, n)
  SELECT request_id, status, count(*) FROM n GROUP BY request_id, status;""",
)

PG_DELETED = _trigger_function(
    "assign_links_deleted",
    """  INSERT INTO link_counts (request_id, status, n)
  SELECT request_id, status, -count(*) FROM o GROUP BY request_id, status;""",
)

PG_TRUNCATED = _trigger_function("assign_links_truncated", "  DELETE FROM link_counts;")

PG_TRIGGERS = (
    "CREATE TRIGGER links_history_update AFTER UPDATE ON links "
    "REFERENCING OLD TABLE AS o NEW TABLE AS n FOR EACH STATEMENT "
    "EXECUTE FUNCTION assign_links_updated()",
    "CREATE TRIGGER links_history_insert AFTER INSERT ON links "
    "REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION assign_links_inserted()",
    "CREATE TRIGGER links_history_delete AFTER DELETE ON links "
    "REFERENCING OLD TABLE AS o FOR EACH STATEMENT EXECUTE FUNCTION assign_links_deleted()",
    "CREATE TRIGGER links_history_truncate AFTER TRUNCATE ON links "
    "FOR EACH STATEMENT EXECUTE FUNCTION assign_links_truncated()",
)
PG_DROP = (
    "DROP TRIGGER IF EXISTS links_history_update ON links",
    "DROP TRIGGER IF EXISTS links_history_insert ON links",
    "DROP TRIGGER IF EXISTS links_history_delete ON links",
    "DROP TRIGGER IF EXISTS links_history_truncate ON links",
    "DROP FUNCTION IF EXISTS assign_links_updated()",
    "DROP FUNCTION IF EXISTS assign_links_inserted()",
    "DROP FUNCTION IF EXISTS assign_links_deleted()",
    "DROP FUNCTION IF EXISTS assign_links_truncated()",
)

# --- SQLite: row triggers ----------------------------------------------------------------------

SQLITE_OUTCOME = _outcome("NEW.status", "NEW.error")
# SQLite keeps UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text
SQLITE_MINUTE = "substr(NEW.updated_at, 1, 16) || ':00.000000'"
WORKING = "('running', 'connecting')"

SQLITE_TRIGGERS = (
    """CREATE TRIGGER links_counts_insert AFTER INSERT ON links BEGIN
  INSERT INTO link_counts (request_id, status, n) VALUES (NEW.request_id, NEW.status, 1);
END""",
    """CREATE TRIGGER links_counts_delete AFTER DELETE ON links BEGIN
  INSERT INTO link_counts (request_id, status, n) VALUES (OLD.request_id, OLD.status, -1);
END""",
    """CREATE TRIGGER links_counts_update AFTER UPDATE OF status, request_id ON links
WHEN OLD.status IS NOT NEW.status OR OLD.request_id IS NOT NEW.request_id BEGIN
  INSERT INTO link_counts (request_id, status, n)
  VALUES (OLD.request_id, OLD.status, -1), (NEW.request_id, NEW.status, 1);
END""",
    f"""CREATE TRIGGER links_attempt_start AFTER UPDATE OF status ON links
WHEN OLD.status IN ('queued', 'connect') AND NEW.status IN {WORKING} BEGIN
  INSERT INTO attempts (link_id, number, phase, server_id, started_at)
  VALUES (NEW.id, (SELECT COALESCE(max(number), 0) + 1 FROM attempts WHERE link_id = NEW.id),
          NEW.phase, NEW.server_id, COALESCE(NEW.started_at, NEW.updated_at));
END""",
    f"""CREATE TRIGGER links_attempt_end AFTER UPDATE OF status ON links
WHEN OLD.status IN {WORKING} AND NEW.status IS NOT OLD.status BEGIN
  UPDATE attempts SET finished_at = NEW.updated_at, outcome = {SQLITE_OUTCOME},
         error = NEW.error, profile_url = NEW.profile_url, post_url = NEW.post_url
  WHERE link_id = NEW.id AND finished_at IS NULL;
END""",
    f"""CREATE TRIGGER links_throughput AFTER UPDATE OF status ON links
WHEN OLD.status IN {WORKING}
 AND NEW.status IN ('completed', 'failed', 'pending', 'queued', 'connect') BEGIN
  INSERT INTO throughput (kind, minute, key, completed, failed)
  SELECT 'server', {SQLITE_MINUTE}, OLD.server_id, NEW.status = 'completed',
         NEW.status <> 'completed'
  WHERE OLD.server_id IS NOT NULL;
  INSERT INTO throughput (kind, minute, key, completed, failed)
  VALUES ('request', {SQLITE_MINUTE}, NEW.request_id, NEW.status = 'completed',
          NEW.status <> 'completed');
END""",
)
SQLITE_DROP = tuple(
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "links_counts_insert",
        "links_counts_delete",
        "links_counts_update",
        "links_attempt_start",
        "links_attempt_end",
        "links_throughput",
    )
)

#: the counts of the links already there, taken once the triggers are in place (on PostgreSQL
#: the triggers' lock on ``links`` holds writers off until this migration commits)
BACKFILL = (
    "INSERT INTO link_counts (request_id, status, n) "
    "SELECT request_id, status, count(*) FROM links GROUP BY request_id, status"
)


def _run(statement: str) -> None:
    # as written: SQLAlchemy's text() would take ':00' for a bound parameter
    op.get_bind().exec_driver_sql(statement)


def create_triggers(dialect: str) -> None:
    """The triggers of this revision (also used by bench/history_cost.py)."""
    pg = (PG_UPDATED, PG_INSERTED, PG_DELETED, PG_TRUNCATED, *PG_TRIGGERS)
    for statement in pg if dialect == "postgresql" else SQLITE_TRIGGERS:
        _run(statement)


def drop_triggers(dialect: str) -> None:
    for statement in PG_DROP if dialect == "postgresql" else SQLITE_DROP:
        _run(statement)


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("link_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(10), nullable=False),
        sa.Column("server_id", sa.Uuid()),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("outcome", sa.String(10)),
        sa.Column("error", sa.Text()),
        sa.Column("profile_url", sa.String(2000)),
        sa.Column("post_url", sa.String(2000)),
        sa.PrimaryKeyConstraint("link_id", "number", name="pk_attempts"),
    )
    op.create_index("ix_attempts_started_at", "attempts", ["started_at"], postgresql_using="brin")
    op.create_table(
        "throughput",
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("key", sa.Uuid(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_throughput_kind_minute_key", "throughput", ["kind", "minute", "key"])
    op.create_table(
        "link_counts",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_link_counts_request_id_status", "link_counts", ["request_id", "status"])
    create_triggers(bind_name(op.get_bind()))
    op.execute(BACKFILL)


def downgrade() -> None:
    drop_triggers(bind_name(op.get_bind()))
    op.drop_table("link_counts")
    op.drop_table("throughput")
    op.drop_index("ix_attempts_started_at", table_name="attempts")
    op.drop_table("attempts")
