"""The link and request state machines of ``assign.domain.states``, with no database.

The expected tables are written out by hand from PRODUCT §4, not derived from the module.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from assign.domain import states
from assign.domain.states import (
    IllegalTransition,
    LinkEvent,
    LinkStatus,
    Phase,
    RequestStatus,
    next_status,
    slot_delta,
)

E, L = LinkEvent, LinkStatus

#: (event, from, to) for a create-phase link: every legal move
LEGAL = [
    (E.ASSIGN, L.PENDING, L.QUEUED),
    (E.CLAIM, L.QUEUED, L.RUNNING),
    (E.CLAIM, L.CONNECT, L.CONNECTING),
    (E.SUCCEED, L.RUNNING, L.COMPLETED),
    (E.SUCCEED, L.CONNECTING, L.COMPLETED),
    (E.FAIL, L.RUNNING, L.FAILED),
    (E.FAIL, L.CONNECTING, L.FAILED),
    (E.RELEASE, L.QUEUED, L.PENDING),
    (E.RETRY, L.FAILED, L.PENDING),
    (E.EXHAUST, L.FAILED, L.CANCELED),
    (E.CONNECT, L.COMPLETED, L.CONNECT),
    *[(E.CANCEL, s, L.CANCELED) for s in L if s is not L.CANCELED],
]
LEGAL_PAIRS = {(event, source) for event, source, _ in LEGAL}
ILLEGAL = [(e, s) for e, s in itertools.product(E, L) if (e, s) not in LEGAL_PAIRS]
#: statuses whose link holds a slot of its server
HOLDS_SLOT = {L.QUEUED, L.RUNNING, L.CONNECTING}


def test_every_event_and_status_is_covered() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(E) * len(L)
    assert len(L) == 8 and len(E) == 9


@pytest.mark.parametrize(("event", "source", "target"), LEGAL)
def test_legal_transition(event: LinkEvent, source: LinkStatus, target: LinkStatus) -> None:
    assert next_status(source, event) is target
    assert next_status(source.value, event, Phase.CREATE.value) is target  # plain strings too
    assert source.value in states.sources(event)


@pytest.mark.parametrize(("event", "source"), ILLEGAL)
def test_illegal_transition(event: LinkEvent, source: LinkStatus) -> None:
    with pytest.raises(
        IllegalTransition, match=f"cannot {event.value} a link that is {source.value}"
    ):
        next_status(source, event)
    assert source.value not in states.sources(event)


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


@pytest.mark.parametrize(
    ("event", "source", "target"),
    [(e, s, L.CONNECT if e is E.RETRY else t) for e, s, t in LEGAL],
)
def test_connect_phase_changes_only_retry(
    event: LinkEvent, source: LinkStatus, target: LinkStatus
) -> None:
    # a failed connect-phase link goes back to connect (same server), not to pending
    assert next_status(source, event, Phase.CONNECT) is target


def test_unknown_status_or_phase() -> None:
    with pytest.raises(ValueError):
        next_status("lost", E.ASSIGN)
    with pytest.raises(ValueError):
        next_status(L.FAILED, E.RETRY, "finish")


def test_sources_are_sorted_strings() -> None:
    assert states.sources(E.CLAIM) == ("connect", "queued")
    assert states.sources(E.SUCCEED) == ("connecting", "running")
    assert states.sources(E.ASSIGN) == ("pending",)
    assert len(states.sources(E.CANCEL)) == 7


@pytest.mark.parametrize(("before", "after"), list(itertools.product(L, L)))
def test_slot_delta_matrix(before: LinkStatus, after: LinkStatus) -> None:
    expected = (after in HOLDS_SLOT) - (before in HOLDS_SLOT)
    assert slot_delta(before, after) == expected
    assert slot_delta(before.value, after.value) == expected


@pytest.mark.parametrize(
    ("event", "source", "delta"),
    [
        (E.ASSIGN, L.PENDING, +1),
        (E.CLAIM, L.QUEUED, 0),
        (E.CLAIM, L.CONNECT, +1),  # a connect link takes its slot when claimed
        (E.SUCCEED, L.RUNNING, -1),
        (E.SUCCEED, L.CONNECTING, -1),
        (E.FAIL, L.RUNNING, -1),
        (E.FAIL, L.CONNECTING, -1),
        (E.RELEASE, L.QUEUED, -1),
        (E.RETRY, L.FAILED, 0),
        (E.EXHAUST, L.FAILED, 0),
        (E.CONNECT, L.COMPLETED, 0),
        (E.CANCEL, L.PENDING, 0),
        (E.CANCEL, L.QUEUED, -1),
        (E.CANCEL, L.RUNNING, -1),
        (E.CANCEL, L.CONNECT, 0),
        (E.CANCEL, L.CONNECTING, -1),
        (E.CANCEL, L.FAILED, 0),
        (E.CANCEL, L.COMPLETED, 0),
    ],
)
def test_slot_delta_of_each_transition(event: LinkEvent, source: LinkStatus, delta: int) -> None:
    for phase in Phase:
        assert slot_delta(source, next_status(source, event, phase)) == delta


def test_slot_sets() -> None:
    assert states.IN_FLIGHT == HOLDS_SLOT
    assert {L.RUNNING, L.CONNECTING} == states.WORKING
    assert {L.PENDING, L.QUEUED, L.RUNNING, L.CONNECT, L.CONNECTING} == states.ACTIVE
    assert {L.PENDING, L.QUEUED, L.RUNNING} == states.UNFINISHED
    assert {L.COMPLETED, L.CANCELED} == states.TERMINAL


@pytest.mark.parametrize(
    ("status", "retry_count", "max_retries", "retryable", "exhausted"),
    [
        ("failed", 0, 3, True, False),
        ("failed", 2, 3, True, False),
        ("failed", 3, 3, False, True),
        ("failed", 4, 3, False, True),
        ("failed", 0, 0, False, True),
        ("pending", 0, 3, False, False),
        ("canceled", 3, 3, False, False),
        ("completed", 0, 3, False, False),
    ],
)
def test_retryable_and_exhausted(
    status: str, retry_count: int, max_retries: int, retryable: bool, exhausted: bool
) -> None:
    assert states.is_retryable(status, retry_count, max_retries) is retryable
    assert states.is_exhausted(status, retry_count, max_retries) is exhausted


@pytest.mark.parametrize(
    ("status", "sets_started", "sets_completed", "clears_completed"),
    [
        (RequestStatus.PENDING, False, False, True),
        (RequestStatus.RUNNING, True, False, True),
        (RequestStatus.CONNECTING, False, False, False),
        (RequestStatus.COMPLETED, False, True, False),
        (RequestStatus.FAILED, False, True, False),
        (RequestStatus.CANCELED, False, True, False),
    ],
)
def test_request_timestamps(
    status: RequestStatus, sets_started: bool, sets_completed: bool, clears_completed: bool
) -> None:
    expected = (sets_started, sets_completed, clears_completed)
    assert states.request_timestamps(status) == expected
    assert states.request_timestamps(status.value) == expected
    assert states.is_closed(status) is sets_completed  # closing is what sets completed_at


NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "service", "beat", "ready"),
    [
        ("online", "tool", NOW - timedelta(minutes=4), True),
        ("online", "tool", NOW - timedelta(minutes=5), True),
        ("online", "tool", NOW - timedelta(minutes=5, seconds=1), False),
        ("online", "tool", None, False),  # never sent a heartbeat
        ("maintenance", "tool", NOW, False),
        ("offline", "tool", NOW, False),
        ("online", "assign", NOW, False),
    ],
)
def test_a_server_is_ready(status: str, service: str, beat: datetime | None, ready: bool) -> None:
    assert states.is_ready(status, service, beat, now=NOW, timeout_minutes=5) is ready


def test_request_timestamps_unknown_status() -> None:
    with pytest.raises(ValueError):
        states.request_timestamps("done")


def test_service_types_and_values() -> None:
    assert states.SERVICE_TYPES == ("entity", "social", "blog20", "stacking", "podcast", "indexing")
    assert [s.value for s in states.ServerStatus] == ["online", "offline", "maintenance"]
    assert [s.value for s in states.AccountStatus] == ["active", "inactive", "banned"]
