"""Simulated tool servers: each heartbeats, claims its queued links, "works" on each for a while
and reports a result, all through :class:`assign.client.AsyncToolClient` over HTTP.

A server can be killed: it stops heartbeating and claiming, and the links it was working on are
never reported, as when a machine dies. The dispatcher must notice and take that work back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

import httpx

from assign.client import ApiError, AsyncToolClient
from assign.client.types import ClaimedLink, Server

ERRORS = ("captcha not solved", "site answered 503", "account locked", "timeout while posting")
#: statuses worth a second try of a report (the service was busy or briefly unreachable)
TRANSIENT = {429, 500, 502, 503, 504}


@dataclass
class Tally:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    abandoned: int = 0  # running when the server died, never reported
    rejected: int = 0  # results the service refused (the link was taken back meanwhile)
    errors: int = 0  # calls that failed for a transient reason


@dataclass
class SimServer:
    server: Server
    client: AsyncToolClient
    task_seconds: float
    fail_rate: float
    rng: random.Random
    heartbeat_every: float = 1.0
    poll_every: float = 0.1
    tally: Tally = field(default_factory=Tally)
    dead: bool = False
    _work: set[asyncio.Task[None]] = field(default_factory=set)
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.server["name"]

    @property
    def busy(self) -> int:
        return len(self._work)

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat and work until ``stop`` is set or the server is killed."""
        beating = asyncio.create_task(self._heartbeats(stop))
        try:
            await self._claims(stop)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            if not self.dead:  # a clean stop lets running work finish and report
                await asyncio.gather(*self._work, return_exceptions=True)
            await self.client.aclose()

    def kill(self) -> int:
        """The machine dies: no more heartbeats, claims or results. Returns the links dropped."""
        self.dead = True
        dropped = len(self._work)
        for task in self._work:
            task.cancel()
        self.tally.abandoned += dropped
        self._slot_freed.set()
        return dropped

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() or self.dead):
            with contextlib.suppress(ApiError, httpx.TransportError):
                await self.client.heartbeat(active_threads=self.busy)
            await _sleep(stop, self.heartbeat_every)

    async def _claims(self, stop: asyncio.Event) -> None:
        idle = self.poll_every
        while not (stop.is_set() or self.dead):
            free = self.server["max_threads"] - self.busy
            if free <= 0:
                self._slot_freed.clear()
                await _wait(stop, self._slot_freed, 1.0)
                continue
            try:
                links = await self.client.claim(limit=free)
            except (ApiError, httpx.TransportError):
                self.tally.errors += 1
                links = []
            if self.dead:  # died while the claim was in flight: that work is lost too
                self.tally.abandoned += len(links)
                return
            for link in links:
                task = asyncio.create_task(self._perform(link))
                self._work.add(task)
                task.add_done_callback(self._done)
            self.tally.claimed += len(links)
            # poll steadily while work flows, slower while the queue is empty
            idle = self.poll_every if links else min(idle * 2, 0.5)
            await _sleep(stop, idle)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        self._slot_freed.set()

    async def _perform(self, link: ClaimedLink) -> None:
        await asyncio.sleep(self.task_seconds * self.rng.uniform(0.4, 1.6))
        if self.rng.random() < self.fail_rate:
            await self._report(link, failed=True)
        else:
            await self._report(link, failed=False)

    async def _report(self, link: ClaimedLink, *, failed: bool) -> None:
        slug = link["id"][:8]
        for attempt in range(5):
            try:
                if failed:
                    await self.client.report_result(
                        link["id"], "failed", error=self.rng.choice(ERRORS)
                    )
                    self.tally.failed += 1
                else:
                    site = link["site_name"] or "site.example"
                    await self.client.report_result(
                        link["id"],
                        "completed",
                        profile_url=f"https://{site}/u/{link['username'] or slug}",
                        post_url=f"https://{site}/p/{slug}",
                    )
                    self.tally.completed += 1
                return
            except ApiError as exc:
                if exc.status_code not in TRANSIENT:
                    self.tally.rejected += 1
                    return
            except httpx.TransportError:
                pass
            self.tally.errors += 1
            await asyncio.sleep(0.2 * (attempt + 1))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` or ``stop`` is set, or ``seconds`` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
