"""Key rotation: values under an older key are re-encrypted and still read back the same."""

from __future__ import annotations

import sqlalchemy as sa

from assign.db.tables import accounts, links
from assign.security.crypto import Cipher
from assign.services import secrets
from assign.services.context import Context
from tests.conftest import TEST_SECRET
from tests.factories import Factory

NEW_SECRET = "rotated-secret-" + "y" * 40


async def test_rotate_re_encrypts_every_password(ctx: Context, factory: Factory) -> None:
    request = await factory.request()
    await factory.links(request, 30)
    await factory.client.post(
        "/api/v1/admin/accounts",
        json={
            "group_id": "2b1c4c64-52c6-4b9c-9a43-1b1d3c1e7a10",
            "email": "a@x",
            "password": "acct-pass",
        },
        headers=factory.admin,
    )
    ctx.cipher = Cipher(NEW_SECRET, older=[TEST_SECRET])

    reports = await secrets.rotate(ctx, batch=7)

    assert reports["links"].rotated == 30 and reports["accounts"].rotated == 1
    async with ctx.db.read() as conn:
        values = [r[0] for r in await conn.execute(sa.select(links.c.password_enc))]
        values += [r[0] for r in await conn.execute(sa.select(accounts.c.password_enc))]
    only_new = Cipher(NEW_SECRET)
    assert all(only_new.is_current(v) for v in values)
    assert sorted({only_new.decrypt(v) for v in values}) == ["acct-pass", "s3cret-pass"]
    assert (await secrets.rotate(ctx))["links"].rotated == 0  # nothing left under the old key
