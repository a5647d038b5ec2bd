"""Calls of one key that arrive while a call of that key is being applied are applied together.

A tool server reporting one result per call sends many at once (one per slot), and each one
updates the same rows: the server's ``active_tasks`` and the request's ``created_links``. Each
transaction holds those rows from its update to its commit (the WAL flush included), so the
results of a fleet would wait for each other one commit at a time. :class:`Batches` keeps at
most one statement of a key (a server) in flight: what arrives meanwhile waits for it to end
and goes in the next one, whole. An idle key's item starts at once, so at low load nothing
waits; under load the batches grow with the queue, and the rows are updated once a batch.

Each item is still applied as it would be alone (the batch statement answers each on its own)
and answered only once its batch has committed; an item is never in a batch with another one
of the same identity (a repeated result waits for the next batch, and is answered as a repeat).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class Batches(Generic[K, I, R]):
    """At most one batch of each key in flight; items queued meanwhile go in the next."""

    def __init__(self, *, limit: int, identity: Callable[[I], Hashable]) -> None:
        self.limit = limit
        self.identity = identity
        self._queued: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self._tasks: dict[K, asyncio.Task[None]] = {}

    async def submit(
        self, key: K, item: I, apply: Callable[[Sequence[I]], Awaitable[Sequence[R]]]
    ) -> R:
        """``item``'s answer from ``apply(batch)`` (the answers in the batch's order); what
        ``apply`` raises is raised to every item of its batch. ``apply`` must be the same for
        every item of ``key``: the one given with the first item of a run of batches applies
        them all."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(key, []).append((item, future))
        if key not in self._tasks:
            # a context of its own: the batch is no part of the first caller's (its open
            # transaction, if any, is not the batch's)
            self._tasks[key] = asyncio.get_running_loop().create_task(
                self._drain(key, apply), context=contextvars.Context()
            )
        return await future

    def _next(self, key: K) -> list[tuple[I, asyncio.Future[R]]]:
        queued = self._queued.pop(key, [])
        batch: list[tuple[I, asyncio.Future[R]]] = []
        later: list[tuple[I, asyncio.Future[R]]] = []
        seen: set[Hashable] = set()
        for entry in queued:
            if entry[1].done():  # its caller is gone: not applied, as if it had not come
                continue
            ident = self.identity(entry[0])
            if len(batch) >= self.limit or ident in seen:
                later.append(entry)
            else:
                seen.add(ident)
                batch.append(entry)
        if later:
            self._queued[key] = later + self._queued.pop(key, [])
        return batch

    async def _drain(self, key: K, apply: Callable[[Sequence[I]], Awaitable[Sequence[R]]]) -> None:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        try:
            while batch := self._next(key):
                try:
                    answers = await apply([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        except BaseException as exc:  # cancelled (shutdown): nobody is left waiting
            for _, future in batch + self._queued.pop(key, []):
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            raise
        finally:
            del self._tasks[key]

    async def close(self) -> None:
        """Stop every batch in flight (their callers get an error)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
