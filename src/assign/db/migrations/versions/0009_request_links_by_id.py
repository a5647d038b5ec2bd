"""a request's links of each status in id order: the console's pages of one request's links

Revision ID: 0009
Revises: 0008

``ix_links_request_id_status`` becomes ``ix_links_request_id_status_id``: the same leading
columns (every per-request status look-up of the API and the dispatcher reads it as before),
then ``id``, so each (request, status) range is in the order of the console's keyset pages
(``link_sets.page``). A page of one request's links merges those ranges and reads about 50
entries of each; by the primary key it read the links of every other request on the way
(13,700 rows for a page of 50 at 1M links and 300 requests). The new index is built before the
old one is dropped, so the previous release's statements always have one of them.
"""

from assign.db import migration_ops

revision, down_revision = "0009", "0008"

BY_STATUS = migration_ops.Index("ix_links_request_id_status", "links", ["request_id", "status"])
BY_STATUS_ID = migration_ops.Index(
    "ix_links_request_id_status_id", "links", ["request_id", "status", "id"]
)


def upgrade() -> None:
    migration_ops.replace_index(BY_STATUS, BY_STATUS_ID)


def downgrade() -> None:
    migration_ops.replace_index(BY_STATUS_ID, BY_STATUS)
