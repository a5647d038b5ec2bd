"""partial indexes for the dispatcher's stale and exhausted checks

Revision ID: 0003
Revises: 0002

Both cover only the links a tick step looks for among a set that grows with the fleet and
its history: ``running``/``connecting`` links by start time (step 2, stale; also
``GET /links?stale=true``), and failed links with no retry left (step 4; empty between ticks).
Neither holds a pending or finished link, so inserting links does not maintain them.
"""

from assign.db import migration_ops

revision, down_revision = "0003", "0002"

# in the order the queries list the statuses (sorted): PostgreSQL then sees the predicate and a
# query's status condition as one, and does not AND this index with another on status
WORKING = "status IN ('connecting', 'running')"
EXHAUSTED = "status = 'failed' AND retry_count >= max_retries"

WORKING_BY_START = migration_ops.Index(
    "ix_links_working_started_at", "links", ["started_at"], where=WORKING
)
EXHAUSTED_BY_REQUEST = migration_ops.Index(
    "ix_links_exhausted_request_id", "links", ["request_id"], where=EXHAUSTED
)


def upgrade() -> None:
    WORKING_BY_START.create()
    EXHAUSTED_BY_REQUEST.create()


def downgrade() -> None:
    EXHAUSTED_BY_REQUEST.drop()
    WORKING_BY_START.drop()
