"""services.batching: one batch of a key in flight, what arrives meanwhile goes in the next."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from assign.services.batching import Batches


class Recorder:
    """An ``apply`` that records its batches and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [f"done {item}" for item in items]


def _batches(limit: int = 1000) -> Batches[str, str, str]:
    return Batches(limit=limit, identity=lambda item: item.split("#")[0])


async def test_an_idle_key_applies_at_once_and_answers_each_item() -> None:
    batches, apply = _batches(), Recorder()
    assert await batches.submit("s", "a", apply) == "done a"
    assert apply.batches == [["a"]]


async def test_items_arriving_while_one_is_in_flight_go_together_in_the_next() -> None:
    batches, apply = _batches(), Recorder()
    apply.gate.clear()
    first = asyncio.create_task(batches.submit("s", "a", apply))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batches.submit("s", x, apply)) for x in "bcd"]
    other = asyncio.create_task(batches.submit("t", "e", apply))  # another key: not held up
    await asyncio.sleep(0.01)
    assert apply.batches == [["a"], ["e"]]
    apply.gate.set()
    assert await first == "done a"
    assert await asyncio.gather(*rest) == ["done b", "done c", "done d"]
    assert await other == "done e"
    assert apply.batches == [["a"], ["e"], ["b", "c", "d"]]


async def test_a_batch_holds_no_item_twice_nor_more_than_the_limit() -> None:
    batches, apply = _batches(limit=2), Recorder()
    apply.gate.clear()
    first = asyncio.create_task(batches.submit("s", "a", apply))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(batches.submit("s", x, apply)) for x in ("b", "b#2", "c", "d")]
    await asyncio.sleep(0)
    apply.gate.set()
    await first
    assert await asyncio.gather(*later) == ["done b", "done b#2", "done c", "done d"]
    assert apply.batches == [["a"], ["b", "c"], ["b#2", "d"]]


async def test_what_apply_raises_reaches_every_item_of_its_batch_only() -> None:
    batches = _batches()
    calls: list[list[str]] = []
    gate = asyncio.Event()

    async def apply(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        if items == ["a"]:
            await gate.wait()
            return ["done a"]
        if "bad" in items:
            raise ValueError("refused")
        return [f"done {item}" for item in items]

    first = asyncio.create_task(batches.submit("s", "a", apply))
    await asyncio.sleep(0.01)
    doomed = [asyncio.create_task(batches.submit("s", x, apply)) for x in ("bad", "b")]
    await asyncio.sleep(0)
    gate.set()
    assert await first == "done a"
    for task in doomed:
        with pytest.raises(ValueError, match="refused"):
            await task
    assert await batches.submit("s", "c", apply) == "done c"  # the key works on
    assert calls == [["a"], ["bad", "b"], ["c"]]


async def test_an_item_whose_caller_left_before_its_batch_is_not_applied() -> None:
    batches, apply = _batches(), Recorder()
    apply.gate.clear()
    first = asyncio.create_task(batches.submit("s", "a", apply))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(batches.submit("s", "b", apply))
    kept = asyncio.create_task(batches.submit("s", "c", apply))
    await asyncio.sleep(0)
    gone.cancel()
    apply.gate.set()
    await first
    assert await kept == "done c"
    assert apply.batches == [["a"], ["c"]]


async def test_close_stops_a_batch_in_flight_and_its_callers_get_an_error() -> None:
    batches, apply = _batches(), Recorder()
    apply.gate.clear()
    first = asyncio.create_task(batches.submit("s", "a", apply))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(batches.submit("s", "b", apply))
    await asyncio.sleep(0)
    await batches.close()
    for task in (first, queued):
        with pytest.raises(RuntimeError):
            await task
