"""Console sessions on both databases: sign-in by admin key, expiry, sign-out, read-only keys."""

from __future__ import annotations

from typing import Any

import pytest

from assign.clock import FrozenClock
from assign.security import keys
from assign.services import catalog, sessions
from assign.services.context import Context


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"admin_key": "asg_bootstrap-key-for-the-tests", "ui_session_hours": 2}


async def test_a_stored_or_bootstrap_admin_key_signs_in(ctx: Context) -> None:
    stored = await catalog.create_admin_key(ctx, name="ops")
    for key in (stored, "asg_bootstrap-key-for-the-tests"):
        token = await sessions.sign_in(ctx, key=key)
        assert token is not None and key not in token
        found = await sessions.find(ctx, token=token)
        assert found is not None and not found.read_only
        assert found.id_hash == keys.hash_key(token) and found.csrf_token


async def test_other_keys_do_not(ctx: Context) -> None:
    assert await sessions.sign_in(ctx, key="asg_nobody") is None
    assert await sessions.find(ctx, token="made-up") is None


async def test_a_session_ends_after_its_hours_or_at_sign_out(
    ctx: Context, clock: FrozenClock
) -> None:
    key = await catalog.create_admin_key(ctx, name="ops")
    token = await sessions.sign_in(ctx, key=key)
    assert token is not None
    clock.advance(hours=1, minutes=59)
    assert await sessions.find(ctx, token=token) is not None
    clock.advance(minutes=2)
    assert await sessions.find(ctx, token=token) is None

    again = await sessions.sign_in(ctx, key=key)
    assert again is not None
    found = await sessions.find(ctx, token=again)
    assert found is not None
    await sessions.sign_out(ctx, id_hash=found.id_hash)
    assert await sessions.find(ctx, token=again) is None


async def test_a_read_only_key_gives_a_read_only_session(ctx: Context) -> None:
    key = await catalog.create_admin_key(ctx, name="viewer", read_only=True)
    token = await sessions.sign_in(ctx, key=key)
    assert token is not None
    found = await sessions.find(ctx, token=token)
    assert found is not None and found.read_only


async def test_a_notice_is_kept_until_cleared(ctx: Context) -> None:
    token = await sessions.sign_in(ctx, key="asg_bootstrap-key-for-the-tests")
    assert token is not None
    found = await sessions.find(ctx, token=token)
    assert found is not None
    await sessions.set_flash(ctx, id_hash=found.id_hash, flash="Retried 3 links.")
    assert (await sessions.find(ctx, token=token)).flash == "Retried 3 links."  # type: ignore[union-attr]
    await sessions.set_flash(ctx, id_hash=found.id_hash, flash=None)
    assert (await sessions.find(ctx, token=token)).flash is None  # type: ignore[union-attr]


async def test_revoking_a_key_ends_its_sessions(ctx: Context) -> None:
    from assign.services import admin_keys

    key = await catalog.create_admin_key(ctx, name="leaving")
    token = await sessions.sign_in(ctx, key=key)
    assert token is not None
    (listed,) = [k for k in await admin_keys.list_admin_keys(ctx) if k["name"] == "leaving"]
    await admin_keys.revoke_admin_key(ctx, key_id=listed["id"])
    assert await sessions.find(ctx, token=token) is None
