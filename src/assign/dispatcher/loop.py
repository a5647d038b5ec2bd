"""The dispatcher loop: lead or wait, tick, then sleep until new work, the interval or a stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from assign import metrics
from assign.db.engine import DatabaseUnavailable
from assign.dispatcher import events
from assign.dispatcher.leader import Leadership
from assign.dispatcher.steps import (
    PLACE_STEPS,
    PROMPT_STEPS,
    STEPS,
    Step,
    TickReport,
    close_requests,
    tick,
)
from assign.services import gauges, history, statistics
from assign.services.context import Context
from assign.services.wake import WAKE_CHANNEL

log = logging.getLogger("assign.dispatcher")

#: shortest pause after a tick that placed work or found every slot taken: the slots the
#: fleet frees next are placed by the next tick, and that wait is part of every slot's cycle
MIN_GAP = 0.001
#: shortest pause after a tick that had free slots and nothing to place, however often results
#: wake the dispatcher (a fleet reporting with nothing left to place would make it spin)
IDLE_GAP = 0.02
#: shortest pause between two looks for requests to start or close in the ticks between full
#: ones: a fleet's results wake the dispatcher every few tens of milliseconds, and that look
#: took a third of each such tick
CLOSE_GAP = 0.25
#: how often the links-by-state gauge is refreshed
GAUGE_SECONDS = 10.0
#: how often the leader deletes history older than ASSIGN_HISTORY_DAYS
PRUNE_SECONDS = 60.0
#: how often the leader folds the rows of differences of link counts and throughput
COMPACT_SECONDS = 10.0


@dataclass
class _Leading:
    """What the loop keeps from one tick as the leader to the next: the connection it listens
    on for new work, and when (``time.monotonic()``) it last did each periodic step."""

    listening_on: Any = None
    last_full: float = 0.0
    last_close: float = 0.0
    #: a tick left requests to start or close for later (see ``CLOSE_GAP``)
    close_owed: bool = False
    last_compact: float = 0.0
    last_prune: float = 0.0
    last_gauge: float = 0.0
    last_analyze: float = 0.0


async def run_dispatcher(ctx: Context, *, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; a tick in progress finishes first."""
    interval = ctx.settings.dispatch_interval
    leadership = Leadership(ctx, lease_seconds=max(5.0, 3 * interval))
    leading = _Leading()
    was_leader = False
    log.info("dispatcher started", extra={"holder": leadership.holder, "interval": interval})
    try:
        while not stop.is_set():
            ctx.wake.clear()
            busy = ticked = eager = False
            try:
                leader = await leadership.acquire(ctx.clock.now())
                metrics.leader.set(1 if leader else 0)
                ctx.hub.leading_here = leader
                if leader != was_leader:
                    events.log_leadership(leadership.holder, leader=leader)
                    was_leader = leader
                if leader:
                    report, full = await _tick(ctx, leadership, leading, interval)
                    busy, eager = report.busy, report.busy or report.slots_full
                    await _upkeep(ctx, leading, full=full)
                    ticked = True
            except (DatabaseUnavailable, OSError) as exc:
                log.warning(
                    "dispatcher tick skipped: database unavailable",
                    extra={"error": type(exc).__name__},
                )
                leading.listening_on = None
            except Exception:
                log.exception("dispatcher tick failed")
            pause = _pause_for(leading, busy=busy, interval=interval, ticked=ticked)
            await _pause(ctx, stop, pause, gap=MIN_GAP if eager else IDLE_GAP)
    finally:
        ctx.hub.leading_here = False
        await leadership.release()
        metrics.leader.set(0)
        if was_leader:
            events.log_leadership(leadership.holder, leader=False)
        log.info("dispatcher stopped", extra={"holder": leadership.holder})


async def _tick(
    ctx: Context, leadership: Leadership, leading: _Leading, interval: float
) -> tuple[TickReport, bool]:
    """One tick as the leader, listening for new work first: its report, and whether it was a
    full tick (every step, once an interval)."""
    raw = await leadership.raw_connection()
    if raw is not None and raw is not leading.listening_on:
        await raw.add_listener(WAKE_CHANNEL, lambda *_: ctx.wake.set())
        leading.listening_on = raw
    started = time.perf_counter()
    # the housekeeping steps run once an interval; a wake-up only places work
    full = time.monotonic() - leading.last_full >= interval
    report = await leadership.keep_during(tick(ctx, steps=_steps(leading, full=full)))
    if full:
        leading.last_full = time.monotonic()
        await leadership.record_tick(ctx.clock.now())
    elapsed = time.perf_counter() - started
    metrics.tick_seconds.observe(elapsed)
    events.log_tick(report, seconds=elapsed, full=full)
    return report, full


def _steps(leading: _Leading, *, full: bool) -> tuple[Step, ...]:
    """A full tick's steps once an interval; between them, the new work placed, and requests
    started and closed at most every ``CLOSE_GAP`` seconds."""
    steps = STEPS if full else PROMPT_STEPS
    if not full and time.monotonic() - leading.last_close < CLOSE_GAP:
        steps = PLACE_STEPS
    leading.close_owed = close_requests not in steps
    if not leading.close_owed:
        leading.last_close = time.monotonic()
    return steps


def _pause_for(leading: _Leading, *, busy: bool, interval: float, ticked: bool) -> float:
    """Seconds to sleep after a pass: none when its tick was busy, else the interval, but, after
    a tick of this leader, no longer than until the look for requests to close that it left for
    later (a follower, or a leader whose tick failed, owes nothing: it waits the interval)."""
    seconds = 0.0 if busy else interval
    if not ticked:
        leading.close_owed = False
    if leading.close_owed:
        seconds = min(seconds, max(0.0, leading.last_close + CLOSE_GAP - time.monotonic()))
    return seconds


async def _upkeep(ctx: Context, leading: _Leading, *, full: bool) -> None:
    """The leader's periodic upkeep after a tick: fold and prune the history, analyze the
    links when enough of them changed (after a full tick, each at its own pace), refresh the
    gauges."""
    if full and time.monotonic() - leading.last_compact > COMPACT_SECONDS:
        await history.compact(ctx)
        leading.last_compact = time.monotonic()
    analyze_due = time.monotonic() - leading.last_analyze > statistics.ANALYZE_SECONDS
    if full and analyze_due and await statistics.refresh(ctx):
        leading.last_analyze = time.monotonic()
    if full and time.monotonic() - leading.last_prune > PRUNE_SECONDS:
        await history.prune(ctx)
        leading.last_prune = time.monotonic()
    if time.monotonic() - leading.last_gauge > GAUGE_SECONDS:
        await refresh_gauge(ctx)
        leading.last_gauge = time.monotonic()


async def _pause(ctx: Context, stop: asyncio.Event, seconds: float, *, gap: float) -> None:
    """Sleep ``seconds``, cut short by new work or a stop; a tick follows the last one by
    ``gap`` at least, however often work arrives (but an idle dispatcher acts at once)."""
    loop = asyncio.get_running_loop()
    ended = loop.time()
    if seconds > 0 and not stop.is_set():
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(ctx.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    left = gap - (loop.time() - ended)
    if left > 0 and not stop.is_set():
        await asyncio.sleep(left)


async def refresh_gauge(ctx: Context) -> None:
    """Keep the cluster-wide gauges of this process warm (also read on every scrape)."""
    await gauges.refresh(ctx)


async def main(ctx: Context) -> None:
    """``assign dispatch``: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_dispatcher(ctx, stop=stop)
