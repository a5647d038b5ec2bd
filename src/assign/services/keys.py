"""Which key is whose: a key's digest looked up once, then trusted for a few seconds.

Every request of the worker and tool APIs carries a key; looking it up is a database round trip
that can cost as much as the request's own work. A process keeps what it found for
``ASSIGN_KEY_CACHE_SECONDS`` (5 by default; 0 turns it off). Only keys that were found are kept,
so a new key works at once; deleting a server forgets every kept key of this process at once,
while another API process may accept the deleted server's key until its entry expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple
from uuid import UUID

from cachetools import TTLCache


class Owner(NamedTuple):
    """Who a key belongs to: an admin key (``server_id`` None) or a server of ``service``."""

    server_id: UUID | None
    service: str | None
    #: an admin key that may only read (see ``assign admin-key create --read-only``)
    read_only: bool = False


class KeyCache:
    """Digest -> :class:`Owner`, each entry kept ``seconds`` (at most ``size`` entries)."""

    def __init__(
        self, seconds: float, *, size: int = 10_000, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._entries: TTLCache[str, Owner] | None = (
            TTLCache(maxsize=size, ttl=seconds, timer=timer) if seconds > 0 else None
        )

    def get(self, digest: str) -> Owner | None:
        return None if self._entries is None else self._entries.get(digest)

    def put(self, digest: str, owner: Owner) -> None:
        if self._entries is not None:
            self._entries[digest] = owner

    def clear(self) -> None:
        if self._entries is not None:
            self._entries.clear()
