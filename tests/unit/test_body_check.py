"""``body_check.too_deep`` against the nesting of the parsed value, on generated JSON texts whose
strings hold brackets, quotes and backslashes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from assign.api import body_check

TRICKY = st.text(alphabet='[]{}"\\ab', max_size=6)
VALUES = st.recursive(
    st.none() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@settings(deadline=None)
@given(VALUES, st.integers(0, 6), st.booleans())
def test_too_deep_is_the_nesting_of_the_value(value: Any, limit: int, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert body_check.too_deep(body, limit) is (depth(value) > limit)


def test_the_limit_is_64_and_brackets_in_strings_do_not_count() -> None:
    assert not body_check.too_deep(b"[" * 64 + b"]" * 64)
    assert body_check.too_deep(b"[" * 65 + b"]" * 65)
    assert not body_check.too_deep(json.dumps({"s": "[" * 100}).encode())
    assert not body_check.too_deep(json.dumps(["\\", "[" * 100, '"[{']).encode())


def test_json_media_types() -> None:
    for accepted in ("application/json", "application/json; charset=utf-8", "application/x+json"):
        assert body_check.is_json_type(accepted)
    for refused in (None, "", "text/plain", "application/x-www-form-urlencoded", "json"):
        assert not body_check.is_json_type(refused)
