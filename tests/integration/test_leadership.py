"""Leadership among ``assign dispatch`` processes on one PostgreSQL database.

* After ``kill -9`` of the leader another dispatcher holds the lock within two ticks plus the
  lease (measured twice, from the kill to the lock seen in ``pg_locks``, and to the log line).
* A tick longer than the lease keeps the lead. SIGTERM to the leader in the middle of a tick:
  the tick finishes (its last step commits), the process exits 0 right after, and the other
  dispatcher takes over at its next tick.
* A leader that hangs (SIGSTOP) loses the lock after the lease; woken up, it follows.
* SIGTERM to an idle dispatcher (leader or not) ends it at once, not after its interval.
* Giving up leadership frees the lock at once (the lock's connection is not pooled).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import asyncpg
import pytest

from assign.clock import Clock
from assign.db.engine import Database
from assign.dispatcher.leader import Leadership
from assign.services.context import Context
from tests.conftest import PG_ADMIN_URL, PG_SKIP
from tests.factories import TOOL, Factory
from tests.integration.procs import (
    STARTUP,
    Proc,
    Processes,
    assign_env,
    errors_logged,
    lock_holder_ports,
    log_time,
    pg_port,
    wait_leader,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(PG_ADMIN_URL is None, reason=PG_SKIP),
    pytest.mark.timeout(120),
]

INTERVAL = 0.2
LEASE = max(5.0, 3 * INTERVAL)  # leader.py's lease for this interval
TAKEOVER_BOUND = 2 * INTERVAL + LEASE


async def wait_started(*dispatchers: Proc) -> None:
    deadline = time.monotonic() + STARTUP
    for proc in dispatchers:
        while not proc.logged("dispatcher started"):
            assert proc.alive(), proc.log_tail()
            assert time.monotonic() < deadline, "dispatcher did not start"
            await asyncio.sleep(0.05)


async def test_takeover_after_kill_9(
    procs: Processes, db: asyncpg.Connection, scratch_db: str
) -> None:
    env = assign_env(scratch_db, dispatch_interval=INTERVAL, db_pool_size=2)
    dispatchers = [procs.start(f"dispatch-{i}", env, "dispatch") for i in range(3)]
    await wait_started(*dispatchers)
    port = pg_port(scratch_db)
    measured = []
    alive = list(dispatchers)
    for _ in range(2):
        victim, _ = await wait_leader(db, alive, port, within=10)
        assert victim is not None
        await asyncio.sleep(3 * INTERVAL)  # the others have tried and failed a few times
        killed_at = time.time()
        victim.send(signal.SIGKILL)
        alive.remove(victim)
        successor, seconds = await wait_leader(db, alive, port, within=TAKEOVER_BOUND + 5)
        assert successor is not None, "nobody took over"
        assert await victim.wait_exit(5) == -signal.SIGKILL
        logged = await successor.wait_logged("dispatcher became leader")
        assert logged
        measured.append((seconds, log_time(logged[-1]) - killed_at))
        assert seconds < TAKEOVER_BOUND
        assert log_time(logged[-1]) - killed_at < TAKEOVER_BOUND
        assert len(await lock_holder_ports(db)) == 1
    for proc in dispatchers:
        assert not errors_logged(proc), proc.log_tail()
    print(
        "\ntake-over after kill -9: "
        + ", ".join(f"{a * 1000:.0f} ms (log {b * 1000:.0f} ms)" for a, b in measured)
        + f"; bound {TAKEOVER_BOUND:g} s"
    )


async def test_hung_leader_loses_the_lock_after_the_lease(
    procs: Processes, db: asyncpg.Connection, scratch_db: str
) -> None:
    env = assign_env(scratch_db, dispatch_interval=INTERVAL, db_pool_size=2)
    dispatchers = [procs.start(f"dispatch-{i}", env, "dispatch") for i in range(2)]
    await wait_started(*dispatchers)
    port = pg_port(scratch_db)
    hung, _ = await wait_leader(db, dispatchers, port, within=10)
    assert hung is not None
    (other,) = [d for d in dispatchers if d is not hung]
    hung.send(signal.SIGSTOP)
    try:
        successor, seconds = await wait_leader(db, [other], port, within=LEASE + 10)
    finally:
        hung.send(signal.SIGCONT)
    assert successor is other, "nobody took over from a hung leader"
    # the lease runs from the leader's last word on its lock session, just before the stop
    assert LEASE - 2 < seconds < TAKEOVER_BOUND + 2, f"take-over after {seconds:.2f} s"

    # woken up, the former leader finds its session gone and follows
    deadline = time.monotonic() + 10
    while not hung.logged("dispatcher lost its lock connection"):
        assert time.monotonic() < deadline, hung.log_tail()
        await asyncio.sleep(0.05)
    await asyncio.sleep(3 * INTERVAL)
    holder, _ = await wait_leader(db, dispatchers, port, within=1)
    assert holder is other
    assert len(hung.logged("dispatcher became leader")) == 1
    for proc in dispatchers:
        assert proc.alive()
        assert not errors_logged(proc), proc.log_tail()
    print(f"\ntake-over from a hung leader: {seconds:.2f} s (lease {LEASE:g} s)")


async def _waiting_on_lock(db: asyncpg.Connection, statement: str) -> bool:
    """Whether a backend of this database waits on a row lock in a statement like that."""
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE $1",
            f"%{statement}%",
        )
    )


async def _request_with_links_to_place(factory: Factory) -> dict[str, Any]:
    """A tool server with free slots, and a pending request with 3 links for it."""
    server = await factory.server(max_threads=5)
    response = await factory.client.post(f"{TOOL}/heartbeat", json={}, headers=factory.tool(server))
    assert response.status_code == 200
    request = await factory.request()
    await factory.links(request, 3)
    return request


async def _wait_for_step_6(db: asyncpg.Connection) -> None:
    """Until the leader's tick waits for the lock on the request (step 6), 20 s at most."""
    deadline = time.monotonic() + 20
    while not await _waiting_on_lock(db, "UPDATE requests"):
        assert time.monotonic() < deadline, "the tick never reached step 6"
        await asyncio.sleep(0.02)


async def _assert_tick_committed(db: asyncpg.Connection, request_id: str, before: float) -> None:
    """The tick begun before SIGTERM committed its last step: the request was started (before
    ``before``) and its links are queued."""
    started_at = await db.fetchval(
        "SELECT started_at FROM requests WHERE id = $1", uuid.UUID(request_id)
    )
    assert started_at is not None and started_at.timestamp() < before
    statuses = await db.fetch(
        "SELECT status FROM links WHERE request_id = $1", uuid.UUID(request_id)
    )
    assert [r["status"] for r in statuses] == ["queued"] * 3


async def test_sigterm_mid_tick_finishes_it_exits_0_and_hands_over(
    procs: Processes, db: asyncpg.Connection, scratch_db: str, local_factory: Factory
) -> None:
    request = await _request_with_links_to_place(local_factory)

    # hold the request's row: the leader's tick assigns the links (step 5), then its step 6
    # (pending request -> running) waits for this lock
    blocker = await asyncpg.connect(scratch_db)
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute(
            "SELECT 1 FROM requests WHERE id = $1 FOR UPDATE", uuid.UUID(request["id"])
        )
        env = assign_env(scratch_db, dispatch_interval=INTERVAL, db_pool_size=2)
        port = pg_port(scratch_db)
        first = procs.start("dispatch-a", env, "dispatch")
        leader, _ = await wait_leader(db, [first], port, within=STARTUP)
        assert leader is first
        second = procs.start("dispatch-b", env, "dispatch")
        await wait_started(second)
        await _wait_for_step_6(db)
        # a tick longer than the lease keeps the lead: the leader speaks on its lock session
        await asyncio.sleep(LEASE + 1)
        still, _ = await wait_leader(db, [first, second], port, within=1)
        assert still is first, "a long tick lost the lead"

        sigterm_at = time.time()
        first.send(signal.SIGTERM)
        assert await first.wait_exit(1.0) is None, "exited in the middle of its tick"
        still, _ = await wait_leader(db, [first], port, within=1)
        assert still is first, "gave up the lock before its tick was over"
        await holding.rollback()
        released = time.monotonic()
    finally:
        await blocker.close()

    code = await first.wait_exit(10)
    exit_seconds = time.monotonic() - released
    assert code == 0, first.log_tail()
    assert exit_seconds < 5, f"exit took {exit_seconds:.2f} s after its tick could finish"
    successor, takeover = await wait_leader(db, [second], port, within=5)
    assert successor is second
    assert takeover < 2 * INTERVAL + 1, f"take-over took {takeover:.2f} s"

    await _assert_tick_committed(db, request["id"], sigterm_at)
    assert first.logged("dispatcher stopped")
    assert not errors_logged(first), first.log_tail()
    print(
        f"\nSIGTERM mid-tick: exit {exit_seconds * 1000:.0f} ms after the tick could go on, "
        f"take-over {takeover * 1000:.0f} ms after the exit"
    )


async def test_sigterm_when_idle_stops_at_once(
    procs: Processes, db: asyncpg.Connection, scratch_db: str
) -> None:
    env = assign_env(scratch_db, dispatch_interval=60, db_pool_size=2)
    port = pg_port(scratch_db)
    leader_proc = procs.start("dispatch-leader", env, "dispatch")
    found, _ = await wait_leader(db, [leader_proc], port, within=STARTUP)
    assert found is leader_proc
    follower = procs.start("dispatch-follower", env, "dispatch")
    await wait_started(follower)
    await asyncio.sleep(0.5)  # both asleep in their 60 s pause

    for proc in (follower, leader_proc):
        sent = time.monotonic()
        proc.send(signal.SIGTERM)
        code = await proc.wait_exit(10)
        assert code == 0, proc.log_tail()
        assert time.monotonic() - sent < 5, f"{proc} took {time.monotonic() - sent:.2f} s"
        assert proc.logged("dispatcher stopped")
        assert not errors_logged(proc), proc.log_tail()
    assert await lock_holder_ports(db) == []


async def test_release_frees_the_lock_at_once(local_ctx: Context, db: asyncpg.Connection) -> None:
    """Leadership.release() ends the lock's session rather than pooling it: another dispatcher
    can lead straight away, while this process and its pool live on."""
    other_db = Database(local_ctx.settings.database_url, pool_size=2)
    other_ctx = Context(
        db=other_db, settings=local_ctx.settings, cipher=local_ctx.cipher, clock=Clock()
    )
    first = Leadership(local_ctx, lease_seconds=LEASE)
    second = Leadership(other_ctx, lease_seconds=LEASE)
    try:
        now = local_ctx.clock.now()
        assert await first.acquire(now) is True
        assert await second.acquire(now) is False
        await first.release()
        assert await lock_holder_ports(db) == []
        assert await second.acquire(now) is True
        assert await first.acquire(now) is False
    finally:
        await first.release()
        await second.release()
        await other_db.dispose()
