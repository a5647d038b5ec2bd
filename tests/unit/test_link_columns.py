"""The link's columns come from one place, ``tables.links``: what the API shows and what a new
link is written with are derived from it, and the public schema says the same."""

from __future__ import annotations

from assign.api.schemas.resources import LinkOut
from assign.db.repositories.links import INSERT_COLUMNS
from assign.db.views import LINK_FIELDS


def test_link_out_lists_the_fields_the_api_shows() -> None:
    assert tuple(LinkOut.model_fields) == LINK_FIELDS


def test_new_links_are_written_in_the_order_create_links_builds_them() -> None:
    assert INSERT_COLUMNS == (
        "id", "request_id", "service_type", "server_id", "site_id", "site_name", "email",
        "username", "password_enc", "about", "status", "phase", "priority", "retry_count",
        "max_retries", "details", "assigned_at", "created_at", "updated_at",
    )  # fmt: skip
