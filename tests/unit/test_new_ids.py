"""Link ids made in bulk are random version-4 UUIDs that behave as uuid.UUID everywhere."""

from __future__ import annotations

import uuid

from assign.db.repositories.links import new_ids


def test_new_ids_are_distinct_version_4_uuids() -> None:
    ids = new_ids(5000)
    assert len(ids) == len(set(ids)) == 5000
    for value in ids:
        assert isinstance(value, uuid.UUID)
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value and hash(uuid.UUID(str(value))) == hash(value)
    assert new_ids(0) == []


def test_new_ids_are_not_sequential() -> None:
    a, b = new_ids(2)
    assert a != b and abs(a.int - b.int) > 2**64
