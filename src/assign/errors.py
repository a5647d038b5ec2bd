"""Errors a use case can raise; the API maps each to its status code and envelope."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class AppError(Exception):
    """An error a use case raises on purpose; the API answers it with ``status_code``, which a
    subclass names in its class statement (``class NotFound(AppError, status_code=404)``)."""

    status_code = 500

    def __init_subclass__(cls, *, status_code: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status_code is not None:
            cls.status_code = status_code

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(AppError, status_code=400):
    @classmethod
    def field(cls, field: str, message: str) -> InvalidInput:
        return cls(f"Invalid {field}: {message}", [{"field": field, "message": message}])


class Unauthorized(AppError, status_code=401): ...


class NotFound(AppError, status_code=404): ...


class Conflict(AppError, status_code=409): ...


class TooLarge(AppError, status_code=413): ...


class TooManyRequests(AppError, status_code=429): ...


class Unavailable(AppError, status_code=503): ...


def existing(value: T | None, message: str) -> T:
    """``value``, or a 404 with ``message`` when there is none."""
    if value is None:
        raise NotFound(message)
    return value
