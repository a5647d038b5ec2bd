"""an index of each request's unfinished links, with their account, for the ETA

Revision ID: 0008
Revises: 0007

``ix_links_remaining_request_id`` holds only the links still to be done (``pending``, ``queued``,
``running``, ``connect``, ``connecting``, ``failed``: ``domain.eta.REMAINING``) by request, with
their ``email`` as an included column on PostgreSQL. The ETA looks at up to 200 of them per
request to see which posting accounts they use (``history.account_samples``); with the email in
the index that is an index-only scan, where ``ix_links_request_id_status`` made it one table
page per link (10,000 for a page of 50 requests at 1M links). Finished links, most of the table,
are not in it, so it grows with the work left rather than with the history. Included columns
are not ordered: the links of a request come in the order of the table, as before, not sorted
by email. SQLite has no included columns; there the index is on ``request_id`` alone.
"""

from assign.db import migration_ops

revision, down_revision = "0008", "0007"

REMAINING = migration_ops.Index(
    "ix_links_remaining_request_id",
    "links",
    ["request_id"],
    # sorted, as the query lists them: PostgreSQL then sees its condition and the predicate as one
    where="status IN ('connect', 'connecting', 'failed', 'pending', 'queued', 'running')",
    include=["email"],
)


def upgrade() -> None:
    REMAINING.create()


def downgrade() -> None:
    REMAINING.drop()
