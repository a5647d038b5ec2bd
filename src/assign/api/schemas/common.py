"""Envelopes shared by every surface."""

from __future__ import annotations

from functools import cache
from typing import Any, Generic, Literal, TypeVar, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

T = TypeVar("T")


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: 5 or 5.0, but neither "5" nor true (which pydantic would take)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


#: ``Annotated[int, Field(ge=..., le=...), JSON_INT]``: an integer as JSON Schema means it (a
#: number with no fractional part); the bounds must come before it, or the JSON schema shows none
JSON_INT = BeforeValidator(_json_integer)


#: the deepest nesting of arrays and objects in a free-form JSON field (its answers must encode)
MAX_JSON_DEPTH = 32
#: the bounds of a number in a free-form JSON field (answers encode 64-bit integers at most)
JSON_NUMBER_MIN, JSON_NUMBER_MAX = -(2**63), 2**63 - 1
#: a free-form JSON value (dict[str, Any] and list[Any] fields) as the OpenAPI document shows it
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "any JSON value: numbers within the signed 64-bit range, "
    f"arrays and objects at most {MAX_JSON_DEPTH} levels deep",
    "anyOf": [
        {"type": "string"},
        {"type": "number", "minimum": JSON_NUMBER_MIN, "maximum": JSON_NUMBER_MAX},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ],
}


def json_problem(value: Any, *, free_form: bool = True) -> str | None:
    """What makes ``value`` (a string, or a JSON value with its keys) unfit to store and answer.

    NUL characters (PostgreSQL cannot store them); and in a free-form JSON value, numbers beyond
    the signed 64-bit range or not finite (which no JSON answer can carry) inside its arrays and
    objects, and nesting deeper than ``MAX_JSON_DEPTH``. (A typed field has its own bounds.)
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters"
        elif isinstance(item, dict | list):
            if free_form and depth >= MAX_JSON_DEPTH:
                return f"must not nest arrays and objects over {MAX_JSON_DEPTH} levels deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, bool) or not depth or not free_form:
            continue
        elif isinstance(item, int | float) and not JSON_NUMBER_MIN <= item <= JSON_NUMBER_MAX:
            # NaN compares false, so it is refused too
            return "must not hold numbers beyond the signed 64-bit range"
    return None


#: the largest ``details`` of a link, encoded as JSON
MAX_DETAILS_BYTES = 64 * 1024
DETAILS_TOO_LARGE = f"must be at most {MAX_DETAILS_BYTES // 1024} KiB once encoded as JSON"


def details_fit(value: Any) -> bool:
    """Whether a link's ``details`` is at most 64 KiB once encoded."""
    try:
        return len(orjson.dumps(value)) <= MAX_DETAILS_BYTES
    except (TypeError, orjson.JSONEncodeError):
        return True  # not encodable as given: the field's own checks answer it


def _details_size(value: Any) -> Any:
    if value is not None and not details_fit(value):
        raise ValueError(DETAILS_TOO_LARGE)
    return value


#: ``Annotated[dict[str, Any] | None, DETAILS_SIZE]``: a link's ``details`` (bulk item, result)
DETAILS_SIZE = AfterValidator(_details_size)


class Model(BaseModel):
    """Request bodies: unknown fields are ignored, so clients may send more than we read.

    No string may hold a NUL character, not even inside a free-form JSON field: PostgreSQL
    cannot store one, so it is refused with a 400 on every database alike; nor may a free-form
    field hold what its answer could not encode (see ``json_problem``).
    """

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        # the common cases first, cheaply (this runs for every field of 5,000 links a batch)
        kind_of = type(value)
        if value is None or kind_of is int or kind_of is bool:
            return value
        if kind_of is str and "\x00" not in value:
            return value
        kind = _field_kinds(cls).get(info.field_name or "")
        # a field of nested models is left to them, so the error names the inner field
        if kind != "nested":
            problem = json_problem(value, free_form=kind == "free")
            if problem is not None:
                raise ValueError(problem)
        return value


@cache
def _field_kinds(model: type[BaseModel]) -> dict[str, str]:
    """Each field of ``model``: ``nested`` (holds request-body models), ``free`` (free-form JSON:
    its type holds ``Any``) or ``typed``."""

    def holds(annotation: Any, test: Any) -> bool:
        return bool(test(annotation)) or any(holds(arg, test) for arg in get_args(annotation))

    def is_model(annotation: Any) -> bool:
        return isinstance(annotation, type) and issubclass(annotation, BaseModel)

    kinds = {}
    for name, field in model.model_fields.items():
        if holds(field.annotation, is_model):
            kinds[name] = "nested"
        elif holds(field.annotation, lambda a: a is Any):
            kinds[name] = "free"
        else:
            kinds[name] = "typed"
    return kinds


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    success: Literal[False] = False
    error: str = Field(description="one clear sentence")
    details: list[ErrorDetail] | None = Field(None, description="each invalid field")


class ListOut(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: list[T]
    total: int = Field(description="number of items in data")


class ItemOut(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T


class UpdatedOut(BaseModel):
    success: Literal[True] = True
    updated: int | bool


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Invalid input; `details` names each bad field",
        401: "Missing key or wrong kind of key",
        404: "Unknown id",
        409: "State conflict",
        413: "Body too large",
        429: "Too many requests for this key",
        503: "Database unavailable",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}
