"""attempts written once, when they end: the running attempt is the link itself

Revision ID: 0011
Revises: 0010

Until this revision the history trigger inserted an ``attempts`` row at each claim and updated
it at the attempt's end: two writes of the table for every attempt, the first in the claim's
statement. Now a running or connecting link's current attempt is read from the link (its
``server_id``, ``phase`` and ``started_at``; ``history.attempts_of`` shows it, open, after the
stored ones), and the trigger inserts the attempt, finished, in the statement that moves the link
off running/connecting, with the server, phase and start the link had (its old row) and the
outcome, error and URLs it ends with (its new row), numbered after the link's last attempt.

On PostgreSQL the statement trigger also no longer joins the old and new rows to count links by
(request, status): it adds -1 for each old row and +1 for each new one and keeps the sums that are
not 0; the join is made only when the statement moved a working link (a result, a rescue, a
cancel), not for a claim or a placement.

The open attempts stored by revision 0005 are deleted: each is its link's (the same server, phase
and start), shown from the link from now on, and inserted with the same number when it ends.
On PostgreSQL ``links`` is locked for writes first, so no claim of the previous release commits an
open attempt after them. The downgrade puts them back from the working links.
"""

import importlib
import textwrap

from alembic import op

from assign.db.dialect import bind_name

revision, down_revision = "0011", "0010"

#: revision 0005: the triggers this one replaces, its outcome rules and helpers
V0005 = importlib.import_module("assign.db.migrations.versions.0005_history")

PG_UPDATED = V0005._trigger_function(
    "assign_links_updated",
    f"""  INSERT INTO link_counts (request_id, status, n)
  SELECT request_id, status, sum(d)
  FROM (SELECT request_id, status, -1 AS d FROM o UNION ALL SELECT request_id, status, 1 FROM n) c
  GROUP BY request_id, status
  HAVING sum(d) <> 0;
  IF NOT EXISTS (SELECT 1 FROM o WHERE o.status IN {V0005.WORKING}) THEN
    RETURN NULL;
  END IF;
  WITH ch AS MATERIALIZED (
    SELECT n.id, n.request_id, o.server_id AS old_server_id, o.phase,
           COALESCE(o.started_at, o.updated_at) AS started_at, n.status AS after, n.error,
           n.profile_url, n.post_url, n.updated_at
    FROM o JOIN n ON n.id = o.id
    WHERE o.status IN {V0005.WORKING} AND n.status <> o.status
  ),
  ended AS (
    INSERT INTO attempts (link_id, number, phase, server_id, started_at, finished_at, outcome,
                          error, profile_url, post_url)
    SELECT ch.id,
           COALESCE((SELECT max(a.number) FROM attempts a WHERE a.link_id = ch.id), 0) + 1,
           ch.phase, ch.old_server_id, ch.started_at, ch.updated_at, {V0005.PG_OUTCOME},
           ch.error, ch.profile_url, ch.post_url
    FROM ch
  ),
  counted AS (
    SELECT date_trunc('minute', ch.updated_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
           ch.old_server_id, ch.request_id,
           (ch.after = 'completed')::int AS completed, (ch.after <> 'completed')::int AS failed
    FROM ch
    WHERE ch.after IN ('completed', 'failed', 'pending', 'queued', 'connect')
  )
{textwrap.indent(V0005.THROUGHPUT_ADDED, "  ")};""",
)

SQLITE_ENDED = f"""CREATE TRIGGER links_attempt_end AFTER UPDATE OF status ON links
WHEN OLD.status IN {V0005.WORKING} AND NEW.status IS NOT OLD.status BEGIN
  INSERT INTO attempts (link_id, number, phase, server_id, started_at, finished_at, outcome,
                        error, profile_url, post_url)
  VALUES (NEW.id, (SELECT COALESCE(max(number), 0) + 1 FROM attempts WHERE link_id = NEW.id),
          OLD.phase, OLD.server_id, COALESCE(OLD.started_at, OLD.updated_at), NEW.updated_at,
          {V0005.SQLITE_OUTCOME}, NEW.error, NEW.profile_url, NEW.post_url);
END"""
#: revision 0005's SQLite triggers of attempts: one at the claim, one at the end
SQLITE_0005 = tuple(s for s in V0005.SQLITE_TRIGGERS if "TRIGGER links_attempt_" in s)
SQLITE_DROP = ("DROP TRIGGER links_attempt_start", "DROP TRIGGER links_attempt_end")

#: the working links' open attempts, as revision 0005 kept them (for the downgrade)
OPEN_ATTEMPTS = f"""INSERT INTO attempts (link_id, number, phase, server_id, started_at)
SELECT l.id, COALESCE((SELECT max(a.number) FROM attempts a WHERE a.link_id = l.id), 0) + 1,
       l.phase, l.server_id, COALESCE(l.started_at, l.updated_at)
FROM links l WHERE l.status IN {V0005.WORKING}"""


def _replace_function(definition: str) -> None:
    V0005._run(definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))


def upgrade() -> None:
    if bind_name(op.get_bind()) == "postgresql":
        V0005._run("LOCK TABLE links IN SHARE ROW EXCLUSIVE MODE")
        _replace_function(PG_UPDATED)
    else:
        for statement in (*SQLITE_DROP, SQLITE_ENDED):
            V0005._run(statement)
    V0005._run("DELETE FROM attempts WHERE finished_at IS NULL")


def downgrade() -> None:
    if bind_name(op.get_bind()) == "postgresql":
        V0005._run("LOCK TABLE links IN SHARE ROW EXCLUSIVE MODE")
        _replace_function(V0005.PG_UPDATED)
    else:
        for statement in (SQLITE_DROP[1], *SQLITE_0005):
            V0005._run(statement)
    V0005._run(OPEN_ATTEMPTS)
