"""Simulated tool servers: each runs :mod:`assign.worker` (heartbeats, waiting claims, results in
batches, all over HTTP) with a handler that "works" on each link for a while.

A server can be killed: it stops heartbeating and claiming, and the links it was working on are
never reported, as when a machine dies. The dispatcher must notice and take that work back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

from assign.client.types import ClaimedLink, Server
from assign.worker import Result, Worker

ERRORS = ("captcha not solved", "site answered 503", "account locked", "timeout while posting")


@dataclass
class Tally:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    abandoned: int = 0  # running when the server died, never reported
    rejected: int = 0  # results the service refused (the link was taken back meanwhile)
    errors: int = 0  # calls sent again after a transient failure


@dataclass
class SimServer:
    server: Server
    base_url: str
    task_seconds: float
    fail_rate: float
    rng: random.Random
    heartbeat_every: float = 1.0
    dead: bool = False
    _abandoned: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _worker: Worker | None = None

    def __post_init__(self) -> None:
        key = self.server["api_key"]  # type: ignore[typeddict-item]
        self._worker = Worker(
            self.base_url,
            key,
            self._perform,
            wait_seconds=2.0,
            heartbeat_seconds=self.heartbeat_every,
        )

    @property
    def name(self) -> str:
        return self.server["name"]

    @property
    def busy(self) -> int:
        assert self._worker is not None
        return self._worker._busy

    @property
    def tally(self) -> Tally:
        assert self._worker is not None
        done = self._worker.tally
        return Tally(
            done.claimed, done.completed, done.failed, self._abandoned, done.rejected, done.retries
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (running work finishes and reports) or the server is
        killed."""
        assert self._worker is not None
        forward = asyncio.create_task(_forward(stop, self._stop))
        try:
            await self._worker.run(self._stop)
        finally:
            forward.cancel()
            await asyncio.gather(forward, return_exceptions=True)

    def kill(self) -> int:
        """The machine dies: no more heartbeats, claims or results. Returns the links dropped."""
        assert self._worker is not None
        self.dead = True
        dropped = self._worker.abandon()
        self._abandoned += dropped
        self._stop.set()
        return dropped

    async def _perform(self, link: ClaimedLink) -> Result:
        await asyncio.sleep(self.task_seconds * self.rng.uniform(0.4, 1.6))
        if self.rng.random() < self.fail_rate:
            return Result.failed(self.rng.choice(ERRORS))
        site = link["site_name"] or "site.example"
        slug = link["id"][:8]
        return Result(
            profile_url=f"https://{site}/u/{link['username'] or slug}",
            post_url=f"https://{site}/p/{slug}",
        )


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await source.wait()
        target.set()
