"""Which errors mean "the database is unavailable" (answered 503) rather than a failed statement."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from assign.db.engine import is_connection_error


def _wrapped(cls: type[sa_exc.DBAPIError], message: str) -> sa_exc.DBAPIError:
    return cls("SELECT 1", None, Exception(message))


@pytest.mark.parametrize(
    "error",
    [
        # every pooled connection busy for pool_timeout
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        # a connection that died while the driver was in the middle of an operation
        _wrapped(
            sa_exc.InterfaceError, "cannot perform operation: another operation is in progress"
        ),
        # the driver used directly (COPY), untranslated
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 21; another operation (2) is in progress"
        ),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        ),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_database_gone(error: BaseException) -> None:
    assert is_connection_error(error)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(sa_exc.IntegrityError, "duplicate key value violates unique constraint"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        ValueError("bad value"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_statement_failed(error: BaseException) -> None:
    assert not is_connection_error(error)
