"""The body of ``POST /links/bulk``, read in one pass when it can be.

Up to 5,000 links make this the one body whose reading costs: ``json.loads`` and then
``LinksBulkIn`` (pydantic, with its per-field checks) take several times longer than inserting the
rows. msgspec parses and checks the body in one pass, into structs that accept a *subset* of what
``LinksBulkIn`` accepts, giving the same values:

* the same fields, types, bounds and defaults; extra fields ignored; the last of duplicate keys;
* strings: only when the raw body holds no NUL (neither a NUL byte nor an escaped ``\\u0000``),
  so no string can hold one;
* ``details``: only a flat object of strings, booleans, nulls, integers within the signed 64-bit
  range and floats well within it, so it can be neither too deep nor hold an unanswerable number;
* UUIDs: the hyphenated and the bare 32-digit spellings only.

Whatever the fast reader refuses, ``LinksBulkIn`` reads again and decides, with every bad field
named, exactly as FastAPI would have read the body. A body is answered the same either way;
``tests/unit/test_bulk_body.py`` checks it on generated bodies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from assign.api import body_check
from assign.api.schemas.common import JSON_NUMBER_MAX, JSON_NUMBER_MIN, details_fit
from assign.api.schemas.inputs import (
    BULK_MAX,
    LINK_RETRIES_MAX,
    LINK_TEXT_MAX,
    LinkIn,
    LinksBulkIn,
    ServiceType,
)

#: the request body that ``POST /links/bulk`` documents (added to the OpenAPI document by hand,
#: since the endpoint reads its body itself)
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LinksBulkIn"}}},
    }
}


#: a value of a flat ``details`` object; floats stop short of 2**63 (the bound of the slow path)
_Flat = (
    str
    | bool
    | None
    | Annotated[int, msgspec.Meta(ge=JSON_NUMBER_MIN, le=JSON_NUMBER_MAX)]
    | Annotated[float, msgspec.Meta(ge=-9.2e18, le=9.2e18)]
)


#: the text fields of a link, bounded by ``LINK_TEXT_MAX``
_SiteName = Annotated[str, msgspec.Meta(max_length=LINK_TEXT_MAX["site_name"])]
_Email = Annotated[str, msgspec.Meta(max_length=LINK_TEXT_MAX["email"])]
_Username = Annotated[str, msgspec.Meta(max_length=LINK_TEXT_MAX["username"])]
_Password = Annotated[str, msgspec.Meta(max_length=LINK_TEXT_MAX["password"])]
_About = Annotated[str, msgspec.Meta(max_length=LINK_TEXT_MAX["about"])]


class FastLink(msgspec.Struct, gc=False):
    """A :class:`LinkIn` as the fast reader makes it (the same attributes)."""

    request_id: uuid.UUID
    service_type: ServiceType
    server_id: uuid.UUID | None = None
    site_id: uuid.UUID | None = None
    site_name: _SiteName | None = None
    email: _Email | None = None
    username: _Username | None = None
    password: _Password | None = None
    about: _About | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=LINK_RETRIES_MAX)] = 3
    details: dict[str, _Flat] | None = None


class _FastBulk(msgspec.Struct, gc=False):
    links: Annotated[list[FastLink], msgspec.Meta(min_length=1, max_length=BULK_MAX)]


_decode = msgspec.json.Decoder(_FastBulk).decode


async def read_links(request: Request) -> Sequence[FastLink | LinkIn]:
    """The links of the body, or a :class:`RequestValidationError` (a 400 naming each field)."""
    body = await request.body()
    is_json = body_check.is_json_type(request.headers.get("content-type"))
    if is_json and b"\x00" not in body and b"\\u0000" not in body:
        try:
            links = _decode(body).links
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass  # LinksBulkIn decides, and names each bad field
        else:
            if all(link.details is None or details_fit(link.details) for link in links):
                return links
    return _read_slowly(body, is_json=is_json).links


def _read_slowly(body: bytes, *, is_json: bool) -> LinksBulkIn:
    """The body read as FastAPI reads a ``LinksBulkIn`` parameter, with the same errors."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    value: Any = body
    if is_json:
        try:
            value = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            position = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", position),
                        "msg": "JSON decode error",
                        "input": {},
                    }
                ]
            ) from None
    try:
        return LinksBulkIn.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None
