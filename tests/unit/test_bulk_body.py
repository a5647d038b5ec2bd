"""The bulk body's fast reader accepts a subset of what LinksBulkIn accepts, with the same values.

Generated bodies mix valid links with every kind of edge the two readers could disagree on: UUID
spellings, strings at their length bounds, NUL and lone surrogates, JSON integers written as
floats, numbers beyond 64 bits, nested and deep ``details``, duplicate keys and extra fields.
"""

from __future__ import annotations

import json
import typing
import uuid
from typing import Any

import msgspec
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assign.api import bulk_body
from assign.api.errors import validation_details
from assign.api.schemas.inputs import LinkIn
from tests.conftest import examples

U = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _fast(body: bytes) -> list[Any] | None:
    """The fast reader's links, or None where it leaves the body to LinksBulkIn."""
    if b"\x00" in body or b"\\u0000" in body:
        return None
    try:
        return list(bulk_body._decode(body).links)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def _slow(body: bytes) -> list[LinkIn] | None:
    try:
        return list(bulk_body._read_slowly(body, is_json=True).links)
    except RequestValidationError:
        return None


def _typed(value: Any) -> Any:
    """``value`` with the type of every scalar beside it (1, 1.0 and True differ)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _fields(link: Any) -> dict[str, Any]:
    return {name: _typed(getattr(link, name)) for name in LinkIn.model_fields}


# --- the same fields ----------------------------------------------------------------------------


def test_the_fast_link_has_the_fields_defaults_and_length_bounds_of_link_in() -> None:
    fast = {f.name: f for f in msgspec.inspect.type_info(bulk_body.FastLink).fields}
    assert set(fast) == set(LinkIn.model_fields)
    checked = set()
    for name, field in LinkIn.model_fields.items():
        default = None if field.is_required() else field.default
        assert (fast[name].default if not fast[name].required else None) == default, name
        assert fast[name].required == field.is_required(), name
        bounds = [m.max_length for m in _metadata(field.annotation) if hasattr(m, "max_length")]
        if bounds:
            (text,) = [t for t in fast[name].type.types if isinstance(t, msgspec.inspect.StrType)]
            assert text.max_length == bounds[0], name
            checked.add(name)
    assert checked == {"site_name", "email", "username", "password", "about"}


def _metadata(annotation: Any) -> list[Any]:
    found = list(getattr(annotation, "__metadata__", ()))
    for arg in typing.get_args(annotation):
        found += _metadata(arg)
    return found


# --- generated bodies ---------------------------------------------------------------------------

_texts = st.one_of(
    st.text(max_size=8),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Lo", "So"]), max_size=4),
    st.sampled_from([199, 200, 201, 319, 320, 321, 499, 500, 501]).map(lambda n: "é" * n),
    st.just("a\x00b"),
)
_uuids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.sampled_from(["", "not-a-uuid", U[:-1], U + "0"]),
    st.integers(),
    st.none(),
)
_EDGE_NUMBERS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 9.2e18, 9.3e18,
                 -9.3e18, 2.0**63, 1e400, -1e400, 0.5, -0.0]  # fmt: skip
_EDGE_UUIDS = [U, U.replace("-", ""), U.upper(), f"{{{U}}}", f"urn:uuid:{U}", "", "x", U[:-1], 5]
_numbers = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from(_EDGE_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _texts)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


_fields_values: dict[str, Any] = {
    "request_id": _uuids,
    "service_type": st.sampled_from(["entity", "social", "indexing", "Social", "", 3, None]),
    "server_id": _uuids,
    "site_id": _uuids,
    "site_name": st.one_of(st.none(), _texts, st.integers()),
    "email": st.one_of(st.none(), _texts),
    "username": st.one_of(st.none(), _texts),
    "password": st.one_of(st.none(), _texts),
    "about": st.one_of(st.none(), _texts, st.sampled_from(["x" * 100_000, "x" * 100_001])),
    "max_retries": st.one_of(
        st.sampled_from([0, 3, 1000, 1001, -1, 5.0, 5.5, True, "5", None, 2**70]),
        st.integers(min_value=-5, max_value=1005),
    ),
    "details": st.one_of(
        st.none(),
        st.dictionaries(_texts, _scalars, max_size=4),
        st.dictionaries(_texts, _json, max_size=3),
        st.sampled_from([_deep(31), _deep(32), _deep(33), [], "x", 1]),
    ),
    "extra": _json,
}


_valid: dict[str, Any] = {
    "request_id": st.uuids().map(str),
    "service_type": st.sampled_from(["entity", "social", "blog20"]),
    "server_id": st.one_of(st.none(), st.uuids().map(str)),
    "site_id": st.one_of(st.none(), st.uuids().map(str)),
    "site_name": st.one_of(st.none(), st.text(max_size=20)),
    "email": st.one_of(st.none(), st.emails()),
    "username": st.one_of(st.none(), st.text(max_size=20)),
    "password": st.one_of(st.none(), st.text(max_size=20)),
    "about": st.one_of(st.none(), st.text(max_size=50)),
    "max_retries": st.integers(min_value=0, max_value=1000),
    "details": st.one_of(
        st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers())
    ),
    "extra": st.integers(),
}


@st.composite
def _link(draw: st.DrawFn) -> str:
    """One link object as JSON text: each field left out, valid, or (one time in five) an edge
    value; sometimes a field twice."""
    members = [("request_id", _valid["request_id"]), ("service_type", _valid["service_type"])]
    for name, edges in _fields_values.items():
        if draw(st.booleans()):
            members.append((name, edges if draw(st.integers(0, 4)) == 0 else _valid[name]))
    order = draw(st.permutations(members))
    if draw(st.integers(0, 4)) == 0:
        order = [*order, draw(st.sampled_from(members))]  # a duplicate key: the last one counts
    ascii_only = draw(st.booleans())
    parts = [
        f"{json.dumps(name)}:{json.dumps(draw(values), ensure_ascii=ascii_only)}"
        for name, values in order
    ]
    return "{" + ",".join(parts) + "}"


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    links = draw(st.lists(_link(), min_size=0, max_size=3))
    shape = draw(st.sampled_from(["links"] * 7 + ["empty", "not-a-list", "array"]))
    text = {
        "links": '{"links":[' + ",".join(links) + "]}",
        "empty": '{"links":[]}',
        "not-a-list": '{"links":' + (links[0] if links else "null") + "}",
        "array": "[" + ",".join(links) + "]",
    }[shape]
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=examples(6), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies())
def test_what_the_fast_reader_accepts_link_in_accepts_with_the_same_values(body: bytes) -> None:
    fast = _fast(body)
    if fast is None:
        return
    slow = _slow(body)
    assert slow is not None, body
    assert [_fields(link) for link in fast] == [_fields(link) for link in slow]


def test_the_generated_bodies_reach_both_readers() -> None:
    """The property above is not vacuous: many bodies take the fast path, many do not."""
    seen = {"fast": 0, "slow only": 0, "refused": 0}

    @settings(
        max_examples=examples(2),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],  # generation is slow on a busy machine
    )
    @given(_bodies())
    def count(body: bytes) -> None:
        if _fast(body) is not None:
            seen["fast"] += 1
        elif _slow(body) is not None:
            seen["slow only"] += 1
        else:
            seen["refused"] += 1

    count()
    assert all(n >= 10 for n in seen.values()), seen


_EDGES = [
    *[("details", {"n": n}) for n in _EDGE_NUMBERS],
    *[("details", {"n": [n]}) for n in _EDGE_NUMBERS],
    *[("max_retries", n) for n in [*_EDGE_NUMBERS, 0, 1000, 1001, -1, 5.0, 5.5, True, "5", None]],
    *[(name, value) for name in ("request_id", "server_id") for value in _EDGE_UUIDS],
    *[("username", "é" * n) for n in (199, 200, 201)],
    *[("email", "😀" * n) for n in (319, 320, 321)],
    *[("details", _deep(n)) for n in (31, 32, 33)],
    ("about", "\ud800"),
    ("service_type", "Social"),
]


@pytest.mark.parametrize(("name", "value"), _EDGES)
def test_each_edge_value_is_read_alike(name: str, value: Any) -> None:
    _assert_read_alike(_link_body(**{name: value}))


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E19", "9223372036854775808.0", "5.0e0"])
def test_numbers_json_dumps_would_not_write_are_read_alike(number: str) -> None:
    _assert_read_alike(_link_body(details={"n": "N"}).replace(b'"N"', number.encode()))
    _assert_read_alike(_link_body(max_retries="N").replace(b'"N"', number.encode()))


def _assert_read_alike(body: bytes) -> None:
    fast = _fast(body)
    if fast is not None:
        slow = _slow(body)
        assert slow is not None
        assert [_fields(link) for link in fast] == [_fields(link) for link in slow]


# --- bodies only the slow reader takes, and the ones neither takes ------------------------------


def _link_body(**fields: Any) -> bytes:
    return json.dumps({"links": [{"request_id": U, "service_type": "social", **fields}]}).encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"max_retries": 5.0},
        {"request_id": f"{{{U}}}"},
        {"request_id": f"urn:uuid:{U}"},
        {"details": {"nested": {"list": [1, 2, {"x": None}]}}},
        {"details": {"big": 2**63 - 1, "float": 2.0**62}},
    ],
)
def test_bodies_the_fast_reader_leaves_to_link_in_are_still_accepted(
    fields: dict[str, Any],
) -> None:
    body = _link_body(**fields)
    assert _fast(body) is None or "details" in fields
    (link,) = _slow(body) or []
    assert link.request_id == uuid.UUID(U)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "a\x00b"}, "links[0].email"),
        ({"details": {"k": "a\x00b"}}, "links[0].details"),
        ({"details": {"k": 2**63}}, "links[0].details"),
        ({"details": _deep(33)}, "links[0].details"),
        ({"max_retries": 5.5}, "links[0].max_retries"),
        ({"request_id": "nope"}, "links[0].request_id"),
        ({"username": "x" * 201}, "links[0].username"),
    ],
)
def test_bad_links_are_refused_by_both_readers(fields: dict[str, Any], field: str) -> None:
    body = _link_body(**fields)
    assert _fast(body) is None
    with pytest.raises(RequestValidationError) as caught:
        bulk_body._read_slowly(body, is_json=True)
    assert field in {d["field"] for d in validation_details(caught.value)}
