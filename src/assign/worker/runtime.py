"""The worker runtime: heartbeats, waiting claims up to the free slots, handlers run
concurrently, results reported in batches, retries with back-off, a graceful stop."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from assign.client import ApiError, AsyncToolClient
from assign.client import types as t

log = logging.getLogger("assign.worker")

#: answers worth sending the same call again after a pause (busy or briefly unreachable)
TRANSIENT = frozenset({429, 500, 502, 503, 504})
#: the longest wait a claim asks for (the API allows 30 s)
WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Result:
    """What a handler returns for one link."""

    status: Literal["completed", "failed"] = "completed"
    profile_url: str | None = None
    post_url: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None

    @classmethod
    def failed(cls, error: str, **fields: Any) -> Result:
        return cls("failed", error=error, **fields)

    def item(self, link_id: str) -> t.ResultItem:
        out: dict[str, Any] = {"id": link_id, "status": self.status}
        for name in ("profile_url", "post_url", "error", "details"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out  # type: ignore[return-value]


Handler = Callable[[t.ClaimedLink], "Result | Awaitable[Result | None] | None"]


@dataclass
class Tally:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0  # results the service refused (404/409: the link was taken back)
    retries: int = 0  # calls sent again after a transient failure


def backoff(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Seconds before attempt ``attempt + 1``: exponential, capped, with jitter."""
    return min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)


@dataclass
class Worker:
    """One tool server's worker. ``await Worker(...).run(stop)`` until ``stop`` is set."""

    base_url: str
    key: str
    handler: Handler
    concurrency: int | None = None
    batch_size: int = 200
    flush_seconds: float = 0.02
    wait_seconds: float = WAIT_SECONDS
    heartbeat_seconds: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    tally: Tally = field(default_factory=Tally)
    _busy: int = 0
    #: handlers that have not yet produced their result
    _running: int = 0
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _results: asyncio.Queue[tuple[str, Result]] = field(default_factory=asyncio.Queue)
    _work: set[asyncio.Task[None]] = field(default_factory=set)
    _abandoned: bool = False

    def abandon(self) -> int:
        """The machine dies: handlers cancelled, results not yet sent dropped, nothing more
        sent (the worker's run still needs its stop). Returns the links dropped."""
        self._abandoned = True
        dropped = len(self._work) + self._results.qsize()
        for task in self._work:
            task.cancel()
        while not self._results.empty():
            self._results.get_nowait()
            self._results.task_done()
        return dropped

    async def run(self, stop: asyncio.Event) -> Tally:
        """Work until ``stop`` is set; then stop claiming, let the handlers finish, report what
        they produced and return."""
        # a waiting claim answers within wait_seconds; the timeout leaves room for the rest
        client = AsyncToolClient(
            self.base_url, self.key, timeout=self.wait_seconds + 15.0, transport=self.transport
        )
        try:
            server = await self._retry(stop, client.heartbeat, active_threads=0)
            if server is None:
                return self.tally
            slots = self.concurrency or int(server["max_threads"])
            is_async = _is_async(self.handler)
            pool = (
                None if is_async else ThreadPoolExecutor(slots, thread_name_prefix="assign-worker")
            )
            reporting = asyncio.create_task(self._report(client), name="assign-worker-report")
            beating = asyncio.create_task(self._heartbeats(client, stop))
            try:
                await self._claims(client, stop, slots, pool)
            finally:
                beating.cancel()
                await asyncio.gather(*self._work, return_exceptions=True)
                if not self._abandoned:
                    await self._results.join()  # every result reported (or refused)
                reporting.cancel()
                await asyncio.gather(beating, reporting, return_exceptions=True)
                if pool is not None:
                    pool.shutdown(wait=False)
        finally:
            await client.aclose()
        return self.tally

    async def _claims(
        self,
        client: AsyncToolClient,
        stop: asyncio.Event,
        slots: int,
        pool: ThreadPoolExecutor | None,
    ) -> None:
        while not stop.is_set():
            free = slots - self._busy
            if free <= 0:
                self._slot_freed.clear()
                await _first(stop.wait(), self._slot_freed.wait())
                continue
            # a claim cut short by the stop is a client gone away: the service claims nothing
            links = await _first(
                self._retry(
                    stop, client.claim, limit=min(free, 1000), wait_seconds=self.wait_seconds
                ),
                stop.wait(),
            )
            if not isinstance(links, list):  # stopped (or the claim gave up on the stop)
                continue
            if self._abandoned:  # died while the claim was in flight: that work is lost too
                return
            for link in links:
                self._busy += 1
                self._running += 1
                self.tally.claimed += 1
                task = asyncio.create_task(self._perform(link, pool))
                self._work.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        self._busy -= 1
        self._slot_freed.set()

    async def _perform(self, link: t.ClaimedLink, pool: ThreadPoolExecutor | None) -> None:
        try:
            outcome = await self._outcome(link, pool)
        finally:
            self._running -= 1  # even when cancelled: a batch never waits for it
        self._results.put_nowait((link["id"], outcome))

    async def _outcome(self, link: t.ClaimedLink, pool: ThreadPoolExecutor | None) -> Result:
        try:
            if pool is None:
                outcome = await self.handler(link)  # type: ignore[misc]
            else:
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(pool, self.handler, link)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
        except Exception as exc:
            log.warning(
                "handler failed", extra={"link_id": link["id"], "error": type(exc).__name__}
            )
            outcome = Result.failed(f"{type(exc).__name__}: {exc}"[:10_000])
        if outcome is None:
            return Result()
        if not isinstance(outcome, Result):
            return Result.failed(f"handler returned {type(outcome).__name__}, not a Result")
        return outcome

    async def _report(self, client: AsyncToolClient) -> None:
        """Batches of results: sent when one fills, ``flush_seconds`` after its first, or as
        soon as no handler is left running (no other result would join it)."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._results.get()]
            flush_at = loop.time() + self.flush_seconds
            while len(batch) < self.batch_size:
                if not self._results.empty():
                    batch.append(self._results.get_nowait())
                    continue
                if self._running == 0:
                    break
                left = flush_at - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._results.get(), left))
                except TimeoutError:
                    break
            try:
                await self._send(client, batch)
            finally:
                for _ in batch:
                    self._results.task_done()

    async def _send(self, client: AsyncToolClient, batch: list[tuple[str, Result]]) -> None:
        items = [result.item(link_id) for link_id, result in batch]
        try:
            answer = await self._retry(None, client.report_results, items)
        except ApiError as exc:
            if exc.status_code != 400 or len(batch) == 1:
                log.error("results refused", extra={"status": exc.status_code, "count": len(batch)})
                self.tally.rejected += len(batch)
                return
            # one bad result refuses the whole batch: the others go on their own
            for one in batch:
                await self._send(client, [one])
            return
        assert answer is not None
        for (_, result), code in zip(batch, answer["data"], strict=True):
            if code["code"] != 200:
                self.tally.rejected += 1
            elif result.status == "completed":
                self.tally.completed += 1
            else:
                self.tally.failed += 1

    async def _heartbeats(self, client: AsyncToolClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _first(stop.wait(), asyncio.sleep(self.heartbeat_seconds))
            if stop.is_set():
                return
            try:
                await client.heartbeat(active_threads=self._busy)
            except (ApiError, httpx.TransportError) as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)[:200]})

    async def _retry(
        self,
        stop: asyncio.Event | None,
        call: Callable[..., Awaitable[Any]],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """``call`` until it answers; transient failures (503, connection errors) are sent again
        after a back-off (``Retry-After`` when the service gives one). None once ``stop`` is set."""
        attempt = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except ApiError as exc:
                if exc.status_code not in TRANSIENT:
                    raise
                pause = exc.retry_after or backoff(attempt)
            except httpx.TransportError:
                pause = backoff(attempt)
            self.tally.retries += 1
            attempt += 1
            if stop is not None:
                await _first(stop.wait(), asyncio.sleep(pause))
                if stop.is_set():
                    return None
            else:
                await asyncio.sleep(pause)


def _is_async(handler: Any) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    call = type(handler).__call__ if not inspect.isroutine(handler) else handler
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


async def _first(*awaitables: Awaitable[Any]) -> Any:
    """The result of the first awaitable to finish (None when it has none); the others are
    cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    first = next(task for task in tasks if task in done)
    return first.result()


def run_worker(
    base_url: str, key: str, handler: Handler, concurrency: int | None = None, **options: Any
) -> Tally:
    """Run a worker until SIGTERM or SIGINT: then it stops claiming, lets its handlers finish,
    reports their results and returns its tally. ``handler(link) -> Result`` may be sync (run in
    a thread, ``concurrency`` threads) or async; an exception it raises is a failed result."""

    async def main() -> Tally:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker = Worker(base_url, key, handler, concurrency, **options)
        return await worker.run(stop)

    return asyncio.run(main())
