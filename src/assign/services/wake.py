"""Prompt wake-ups, both ways between the dispatcher and the tool servers.

* New pending links or freed slots wake the dispatcher before its interval. In one process an
  asyncio event does it; across processes on PostgreSQL, ``NOTIFY assign_wake`` reaches the
  leader, which LISTENs on its lock connection.
* The dispatcher's assignments wake the claims waiting for them (``wait_seconds``). Each API
  process keeps its waiting claims by server (:class:`Hub`); on PostgreSQL the assigning
  transaction sends ``NOTIFY assign_claims`` naming the servers (delivered when it commits) and
  each process LISTENs on one connection of its own, fanning out to its waiting claims; on
  SQLite (one process) the assignment wakes them on the event loop once it has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assign.db.repositories import notices

if TYPE_CHECKING:
    from assign.services.context import Context

log = logging.getLogger("assign.wake")

WAKE_CHANNEL = "assign_wake"
CLAIM_CHANNEL = "assign_claims"
#: a NOTIFY payload naming every server (more than MAX_NAMED were assigned work)
EVERY_SERVER = "*"
MAX_NAMED = 100
#: shortest gap between two cross-process wake-ups sent after results (each ``NOTIFY``
#: serialises its commit on PostgreSQL's notification lock); every result is followed by one
#: within it
WAKE_GAP = 0.02
#: pause before the claim listener connects again after losing its connection
RELISTEN_SECONDS = 1.0


async def notify(ctx: Context, conn: AsyncConnection) -> None:
    """Call inside the writing transaction: wakes dispatchers here and in other processes."""
    await notices.notify(conn, WAKE_CHANNEL)
    ctx.db.on_loop(ctx.wake.set)


def slots_freed(ctx: Context) -> None:
    """Call after a commit that freed slots: the dispatcher here wakes now, one elsewhere within
    ``WAKE_GAP`` (one ``NOTIFY`` for many results: each would serialise its commit on
    PostgreSQL's notification lock); none when the dispatcher here leads (the others only
    stand by)."""
    ctx.wake.set()
    if ctx.db.shared_by_processes and not ctx.hub.leading_here:
        ctx.hub.send_wake(ctx)


async def links_ready(ctx: Context, conn: AsyncConnection, server_ids: Iterable[Any]) -> None:
    """Call inside the transaction that queued links on these servers: wakes their waiting
    claims in every process once it commits (``NOTIFY`` on PostgreSQL; on SQLite, one process,
    through ``Database.on_loop``)."""
    ids = sorted({s for s in server_ids if s is not None})
    if not ids:
        return
    payload = EVERY_SERVER if len(ids) > MAX_NAMED else ",".join(str(s) for s in ids)
    if not await notices.notify(conn, CLAIM_CHANNEL, payload):
        ctx.db.on_loop(lambda: ctx.hub.wake(ids))


class Hub:
    """This process's waiting claims by server, and the one connection that LISTENs for them."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._wake_due = asyncio.Event()
        #: whether this process's dispatcher leads (it wakes on ``Context.wake``)
        self.leading_here = False

    # --- waiting claims ----------------------------------------------------------------------

    async def register(self, ctx: Context, server_id: uuid.UUID) -> asyncio.Event:
        """An event set when links may be ready for ``server_id``; on PostgreSQL once the
        listener is up (or has failed to come up within a second)."""
        if ctx.db.shared_by_processes:
            if self._listener is None or self._listener.done():
                self._listener = asyncio.create_task(self._listen(ctx), name="assign-claims")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), 1.0)
        # registered before the claim first looks, so nothing placed after that look is missed
        event = asyncio.Event()
        self._waiting.setdefault(server_id, set()).add(event)
        return event

    def unregister(self, server_id: uuid.UUID, event: asyncio.Event) -> None:
        events = self._waiting.get(server_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[server_id]

    def wake(self, server_ids: Iterable[uuid.UUID] | None) -> None:
        """Wake the claims waiting for these servers (None: every waiting claim)."""
        if server_ids is None:
            groups: Iterable[set[asyncio.Event]] = list(self._waiting.values())
        else:
            groups = [self._waiting[s] for s in server_ids if s in self._waiting]
        for events in groups:
            for event in events:
                event.set()

    def waiting(self, server_id: uuid.UUID) -> int:
        """How many claims of the server wait here."""
        return len(self._waiting.get(server_id, ()))

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == EVERY_SERVER:
            self.wake(None)
            return
        ids = []
        for part in payload.split(","):
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(part))
        self.wake(ids)

    async def _listen(self, ctx: Context) -> None:
        import asyncpg

        while True:
            conn = None
            try:
                # LISTEN needs a session of its own: the database itself, not a pooler
                engine = await ctx.db.session_engine()
                if engine is None:
                    await self._poll(ctx)
                    continue
                dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                conn = await asyncpg.connect(
                    dsn, timeout=5, server_settings={"application_name": "assign-claims"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CLAIM_CHANNEL, self._on_notify)
                self._listening.set()
                self.wake(None)  # what was assigned while nobody listened is looked at again
                await lost.wait()
                log.warning("claim listener lost its connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("claim listener cannot connect", extra={"error": type(exc).__name__})
            finally:
                self._listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=1))
            self.wake(None)
            await asyncio.sleep(RELISTEN_SECONDS)

    async def _poll(self, ctx: Context) -> None:
        """Behind a pooler with no direct URL, nothing can LISTEN: every waiting claim looks
        again a few times a dispatcher interval (until cancelled)."""
        self._listening.set()
        seconds = max(0.1, min(1.0, ctx.settings.dispatch_interval / 2))
        while True:
            await asyncio.sleep(seconds)
            self.wake(None)

    # --- wake-ups of other processes' dispatchers --------------------------------------------

    def send_wake(self, ctx: Context) -> None:
        self._wake_due.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_wakes(ctx), name="assign-wake")

    async def _send_wakes(self, ctx: Context) -> None:
        while True:
            await self._wake_due.wait()
            self._wake_due.clear()
            try:
                # committed: through a pooler a read is a transaction rolled back, and a
                # NOTIFY rolled back is never delivered
                await ctx.db.run(lambda conn: notices.notify(conn, WAKE_CHANNEL))
            except Exception as exc:
                log.debug("wake-up not sent", extra={"error": type(exc).__name__})
            await asyncio.sleep(WAKE_GAP)

    async def close(self) -> None:
        """Stop the listener and the wake-up sender; waiting claims are woken (to time out)."""
        tasks = [t for t in (self._listener, self._sender) if t is not None]
        self._listener = self._sender = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.wake(None)
