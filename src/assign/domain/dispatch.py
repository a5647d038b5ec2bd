"""Dispatch policy: which pending link goes to which server, within account limits. No I/O.

Links arrive in dispatch order (request priority, then oldest). Each goes to the server of the
highest priority that accepts its service type and has a free slot, the one with the most free
slots among equals, so load spreads evenly. An account whose allowance is used up holds its
remaining links back (they stay pending and are not failures).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class FreeServer:
    id: uuid.UUID
    priority: int
    free: int
    service_types: frozenset[str] = frozenset()  # empty: accepts every type

    def accepts(self, service_type: str) -> bool:
        return not self.service_types or service_type in self.service_types


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    service_type: str
    email: str | None


@dataclass
class Plan:
    assignments: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (link, server)
    held_back: int = 0
    held_emails: set[str] = field(default_factory=set)  # allowance used up
    unplaceable_types: set[str] = field(default_factory=set)  # no server with room takes them


def window_size(*, want: int, read: int, placed: int, cap: int) -> int:
    """How many pending links the next window locks to place ``want`` more: the first window
    (nothing ``read`` yet) exactly that many, later ones scaled by how many of those read so
    far could be ``placed`` (rounded up), never fewer than ``want`` nor more than ``cap``."""
    if not read:
        return want
    return min(max(want, -(-want * read // max(placed, 1))), cap)


def plan(
    candidates: Iterable[Candidate],
    servers: Sequence[FreeServer],
    allowance: dict[str, int],
) -> Plan:
    """Assign ``candidates`` in order; ``allowance[email]`` is how many that account may still get
    (emails missing from it are unlimited). Mutates ``servers[i].free`` and ``allowance``."""
    result = Plan()
    # one heap per priority level, best (most free) first; levels tried from the highest
    levels: dict[int, list[tuple[int, int, FreeServer]]] = {}
    for order, server in enumerate(servers):
        if server.free > 0:
            levels.setdefault(server.priority, []).append((-server.free, order, server))
    for heap in levels.values():
        heapq.heapify(heap)
    ordered_levels = [levels[p] for p in sorted(levels, reverse=True)]

    for link in candidates:
        if link.email is not None and link.email in allowance and allowance[link.email] <= 0:
            result.held_back += 1
            result.held_emails.add(link.email)
            continue
        if link.service_type in result.unplaceable_types:
            continue
        taken = _take_slot(ordered_levels, link.service_type)
        if taken is None:
            result.unplaceable_types.add(link.service_type)
            continue
        result.assignments.append((link.id, taken.id))
        if link.email is not None and link.email in allowance:
            allowance[link.email] -= 1
            if allowance[link.email] <= 0:
                result.held_emails.add(link.email)
    return result


def _take_slot(
    levels: list[list[tuple[int, int, FreeServer]]], service_type: str
) -> FreeServer | None:
    for heap in levels:
        skipped = []
        chosen = None
        while heap:
            entry = heapq.heappop(heap)
            if entry[2].accepts(service_type):
                chosen = entry
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(heap, entry)
        if chosen is not None:
            server = chosen[2]
            server.free -= 1
            if server.free > 0:
                heapq.heappush(heap, (-server.free, chosen[1], server))
            return server
    return None
