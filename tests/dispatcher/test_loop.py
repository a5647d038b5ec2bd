"""The dispatcher loop: prompt wake-up on new work, graceful stop, leadership on SQLite."""

from __future__ import annotations

import asyncio
import time
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


async def test_new_links_are_dispatched_without_waiting_for_the_interval(
    ctx: Context, factory: Factory
) -> None:
    ctx.clock = Clock()
    await no_rate_limit(factory)
    server = await factory.server(max_threads=5)
    await heartbeat(factory, server)
    request = await factory.request()
    stop = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(ctx, stop=stop))
    try:
        await asyncio.sleep(0.3)  # the first tick has run and found nothing
        started = time.monotonic()
        await factory.links(request, 2)
        while (await statuses(factory, request)).get("queued") != 2:
            assert time.monotonic() - started < 5, "links were not dispatched promptly"
            await asyncio.sleep(0.02)
        # a freed slot wakes it too
        (claimed, _) = await factory.claim(server)
        await factory.links(request, 4)  # 2 running + 4 > 5 slots: one waits for a slot
        deadline = time.monotonic() + 5
        while (await statuses(factory, request)).get("queued", 0) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert (await statuses(factory, request)).get("pending") == 1
        await factory.result(claimed["id"], server)
        while (await statuses(factory, request)).get("pending"):
            assert time.monotonic() < deadline + 5, "a freed slot did not wake the dispatcher"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)  # a stop ends the loop promptly


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
    ctx.clock = Clock()
    await no_rate_limit(factory)
    server = await factory.server(max_threads=5)
    await heartbeat(factory, server)
    request = await factory.request()
    stop = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(ctx, stop=stop))
    try:
        await asyncio.sleep(0.3)  # the first (full) tick has run: its look was just now
        (link,) = await factory.links(request, 1)
        started = time.monotonic()
        while (await statuses(factory, request)).get("queued") != 1:
            assert time.monotonic() - started < 5, "the link was not dispatched promptly"
            await asyncio.sleep(0.02)
        await factory.claim(server)
        assert (await factory.result(link["id"], server)).status_code == 200
        # the result's wake-up came within the gap: that tick placed work only
        while (await factory.get_request(request["id"]))["status"] != "completed":
            assert time.monotonic() - started < 5, "the finished request was not closed"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


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
