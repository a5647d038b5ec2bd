"""The dispatch policy without a database: priorities, slots, service types, allowances."""

from __future__ import annotations

import uuid

import pytest

from assign.domain.dispatch import Candidate, FreeServer, plan, window_size


def _servers(*specs: tuple[int, int] | tuple[int, int, set[str]]) -> list[FreeServer]:
    out = []
    for spec in specs:
        types = frozenset(spec[2]) if len(spec) == 3 else frozenset()  # type: ignore[misc]
        out.append(FreeServer(uuid.uuid4(), spec[0], spec[1], types))
    return out


def _links(n: int, service_type: str = "entity", email: str | None = None) -> list[Candidate]:
    return [Candidate(uuid.uuid4(), service_type, email) for _ in range(n)]


def test_fills_higher_priority_servers_first() -> None:
    low, high = _servers((0, 5), (10, 2))
    result = plan(_links(3), [low, high], {})
    assert [server for _, server in result.assignments] == [high.id, high.id, low.id]


def test_spreads_over_equal_priority_by_free_slots() -> None:
    a, b = _servers((0, 3), (0, 1))
    result = plan(_links(4), [a, b], {})
    taken = [server for _, server in result.assignments]
    assert taken.count(a.id) == 3 and taken.count(b.id) == 1
    assert taken[0] == a.id  # the server with most free slots first


def test_never_more_than_free_slots() -> None:
    servers = _servers((0, 2), (0, 1))
    result = plan(_links(10), servers, {})
    assert len(result.assignments) == 3
    assert "entity" in result.unplaceable_types


def test_service_types_are_honoured() -> None:
    social_only, any_type = _servers((5, 5, {"social"}), (0, 5))
    result = plan(_links(2, "entity") + _links(1, "social"), [social_only, any_type], {})
    placed = dict(result.assignments)
    assert list(placed.values()) == [any_type.id, any_type.id, social_only.id]


def test_allowance_holds_back_links_of_an_account() -> None:
    (server,) = _servers((0, 10))
    links = _links(3, email="a@x") + _links(2, email="b@x") + _links(1)
    allowance = {"a@x": 1, "b@x": 0}
    result = plan(links, [server], allowance)
    assert len(result.assignments) == 2  # one of a@x, the one without email
    assert result.held_back == 4
    assert result.held_emails == {"a@x", "b@x"}


@pytest.mark.parametrize(
    ("want", "read", "placed", "cap", "size"),
    [
        (10, 0, 0, 100, 10),  # first window: exactly what can be placed
        (10, 20, 10, 100, 20),  # half of what was read could be placed: twice as many
        (10, 30, 7, 100, 43),  # rounded up
        (10, 5, 5, 100, 10),  # everything read was placed: no fewer than wanted
        (10, 50, 0, 100, 100),  # nothing placed yet: as if one was, within the cap
        (10, 1000, 1, 100, 100),  # never more than the cap
    ],
)
def test_window_size_scales_by_what_could_be_placed(
    want: int, read: int, placed: int, cap: int, size: int
) -> None:
    assert window_size(want=want, read=read, placed=placed, cap=cap) == size
