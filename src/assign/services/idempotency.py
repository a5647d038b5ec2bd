"""Idempotent creates: a request repeated with the same ``Idempotency-Key`` runs once.

The key is claimed, the use case runs and its answer is stored, all in one transaction: either
everything is committed or nothing is, so a crash can't leave a key without its effect or an
effect without its key. A concurrent twin waits for the owner's commit and gets the same answer.
Answers are stored encrypted (a created server's answer holds its API key). Keys live 24 hours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import idempotency as repo
from assign.errors import Conflict
from assign.services.context import Context

RETENTION = timedelta(hours=24)
Encode = Callable[[Any], bytes]


def fingerprint(route: str, body: bytes) -> str:
    return hashlib.sha256(route.encode() + b"\0" + body).hexdigest()


async def run_once(
    ctx: Context,
    *,
    principal: str,
    key: str,
    route: str,
    body: bytes,
    status_code: int,
    call: Callable[[], Awaitable[Any]],
    encode: Encode,
) -> tuple[int, bytes]:
    """(status, encoded answer): of ``call()`` when the key is new, else the stored one."""
    now = ctx.clock.now()
    digest = fingerprint(route, body)

    async def work(conn: AsyncConnection) -> tuple[int, bytes] | None:
        owned = await repo.claim(
            conn, principal=principal, key=key, route=route, fingerprint=digest, now=now,
            expired_before=now - RETENTION,
        )  # fmt: skip
        if not owned:
            return None
        payload = encode(await call())  # joins this transaction
        stored = ctx.cipher.encrypt(payload.decode())
        await repo.store(
            conn, principal=principal, key=key, status_code=status_code, response=stored or b""
        )
        return status_code, payload

    answer = await ctx.db.run(work)
    if answer is not None:
        return answer
    async with ctx.db.read() as conn:
        row = await repo.get(conn, principal=principal, key=key)
    if row is None or row.status_code is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly")
    if row.body_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request body")
    return row.status_code, (ctx.cipher.decrypt(row.response) or "").encode()
