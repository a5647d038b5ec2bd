"""The dispatcher loop: prompt wake-up on new work, graceful stop, leadership on SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from assign.clock import Clock
from assign.dispatcher.leader import Leadership
from assign.dispatcher.loop import run_dispatcher
from assign.services.context import Context
from tests.dispatcher.test_tick import heartbeat, no_rate_limit, statuses
from tests.factories import Factory


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dispatch_interval": 30}  # far longer than the test: only a wake-up can dispatch


@asynccontextmanager
async def dispatching(
    ctx: Context, factory: Factory
) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(an online server of 5 slots, a request) with the dispatcher loop running on the real
    clock, its first tick done; the loop is stopped afterwards (a stop ends it promptly)."""
    ctx.clock = Clock()
    await no_rate_limit(factory)
    server = await factory.server(max_threads=5)
    await heartbeat(factory, server)
    request = await factory.request()
    stop = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(ctx, stop=stop))
    try:
        await asyncio.sleep(0.3)  # the first (full) tick has run and found nothing
        yield server, request
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def queued(factory: Factory, request: dict[str, Any], n: int) -> None:
    """Wait (5 s at most) until ``n`` of the request's links are queued."""
    started = time.monotonic()
    while (await statuses(factory, request)).get("queued", 0) < n:
        assert time.monotonic() - started < 5, "links were not dispatched promptly"
        await asyncio.sleep(0.02)


async def test_new_links_are_dispatched_without_waiting_for_the_interval(
    ctx: Context, factory: Factory
) -> None:
    async with dispatching(ctx, factory) as (server, request):
        await factory.links(request, 2)
        await queued(factory, request, 2)
        # a freed slot wakes it too
        (claimed, _) = await factory.claim(server)
        await factory.links(request, 4)  # 2 running + 4 > 5 slots: one waits for a slot
        await queued(factory, request, 3)
        assert (await statuses(factory, request)).get("pending") == 1
        await factory.result(claimed["id"], server)
        deadline = time.monotonic() + 5
        while (await statuses(factory, request)).get("pending"):
            assert time.monotonic() < deadline, "a freed slot did not wake the dispatcher"
            await asyncio.sleep(0.02)


async def test_only_one_leader_at_a_time(ctx: Context) -> None:
    first = Leadership(ctx, lease_seconds=5)
    second = Leadership(ctx, lease_seconds=5)
    now = ctx.clock.now()
    assert await first.acquire(now) is True
    assert await second.acquire(now) is False
    assert await first.acquire(now) is True  # the holder keeps it
    await first.release()
    assert await second.acquire(now) is True  # released: another takes over at once
    await second.release()


async def test_a_request_done_soon_after_a_look_is_closed_without_waiting_for_the_interval(
    ctx: Context, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between full ticks the dispatcher looks for requests to close at most every CLOSE_GAP
    seconds; a wake-up sooner places work only, and the look it left follows on its own."""
    from assign.dispatcher import loop

    monkeypatch.setattr(loop, "CLOSE_GAP", 1.0)  # every step below falls within one gap
    async with dispatching(ctx, factory) as (server, request):  # the first tick's look: now
        started = time.monotonic()
        (link,) = await factory.links(request, 1)
        await queued(factory, request, 1)
        await factory.claim(server)
        assert (await factory.result(link["id"], server)).status_code == 200
        # the result's wake-up came within the gap: that tick placed work only
        while (await factory.get_request(request["id"]))["status"] != "completed":
            assert time.monotonic() - started < 5, "the finished request was not closed"
            await asyncio.sleep(0.05)


def test_only_a_leader_that_ticked_shortens_its_pause_for_a_look_it_owes() -> None:
    """A look for requests to close left for later shortens the pause after the leader's tick;
    a follower, or a leader whose tick failed, waits the whole interval (no 20 ms loop of lock
    attempts or warnings while another process leads or the database is away)."""
    from assign.dispatcher import loop

    leading = loop._Leading(last_close=time.monotonic(), close_owed=True)
    assert loop._pause_for(leading, busy=False, interval=30, ticked=True) <= loop.CLOSE_GAP
    assert loop._pause_for(leading, busy=False, interval=30, ticked=False) == 30
    # and a stale debt is dropped: the next leader's tick decides anew
    assert not leading.close_owed
    assert loop._pause_for(leading, busy=False, interval=30, ticked=True) == 30
    assert loop._pause_for(leading, busy=True, interval=30, ticked=True) == 0


async def test_wake_ups_with_nothing_to_place_do_not_make_it_spin(
    ctx: Context, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that finds free slots and nothing to place is followed by the next one IDLE_GAP
    later at the earliest, however often results wake the dispatcher (after a tick that placed
    work or found every slot taken, MIN_GAP: the next freed slot is work)."""
    from assign.dispatcher import loop

    monkeypatch.setattr(loop, "IDLE_GAP", 0.1)
    ticks = 0
    real_tick = loop.tick

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal ticks
        ticks += 1
        return await real_tick(*args, **kwargs)

    async with dispatching(ctx, factory):  # a server with free slots, no link anywhere
        monkeypatch.setattr(loop, "tick", counted)
        started = time.monotonic()
        while time.monotonic() - started < 0.6:
            ctx.wake.set()  # as a stream of results would
            await asyncio.sleep(0.001)
        elapsed = time.monotonic() - started
    assert 1 <= ticks <= elapsed / 0.1 + 2
