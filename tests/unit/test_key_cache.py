"""The per-process cache of keys found: entries expire, a zero TTL keeps nothing."""

from __future__ import annotations

import uuid

from assign.services.keys import KeyCache, Owner


def test_an_entry_lives_for_its_seconds_then_is_gone() -> None:
    now = [100.0]
    cache = KeyCache(5, timer=lambda: now[0])
    owner = Owner(uuid.uuid4(), "tool")
    cache.put("digest", owner)
    now[0] += 4.9
    assert cache.get("digest") == owner
    now[0] += 0.2
    assert cache.get("digest") is None


def test_clear_forgets_everything_and_zero_seconds_keeps_nothing() -> None:
    cache = KeyCache(60)
    cache.put("a", Owner(None, None))
    assert cache.get("a") == Owner(None, None)
    cache.clear()
    assert cache.get("a") is None
    off = KeyCache(0)
    off.put("a", Owner(None, None))
    assert off.get("a") is None
