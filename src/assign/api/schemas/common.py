"""Envelopes shared by every surface."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    """Request bodies: unknown fields are ignored, so clients may send more than we read."""

    model_config = ConfigDict(extra="ignore")


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
