"""``Database.run`` runs a transaction again on a deadlock or serialization failure (PRODUCT §9),
and every write of the use cases and the dispatcher's steps goes through it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from assign.db.engine import Database

SRC = Path(__file__).resolve().parents[2] / "src" / "assign"


class DriverError(Exception):
    """What asyncpg raises when used directly (COPY): its own error, with a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(sqlstate: str) -> DBAPIError:
    return DBAPIError("UPDATE links ...", None, DriverError(sqlstate))


@pytest.mark.parametrize(
    "failure",
    [_wrapped("40P01"), _wrapped("40001"), DriverError("40P01")],
    ids=["deadlock", "serialization", "deadlock-in-copy"],
)
async def test_a_deadlocked_transaction_is_run_again(tmp_path: Path, failure: Exception) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    calls = 0

    async def work(conn: Any) -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise failure
        return "done"

    try:
        assert await db.run(work) == "done"
    finally:
        await db.dispose()
    assert calls == 4


async def test_other_errors_are_not_run_again(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    calls = 0

    async def work(conn: Any) -> None:
        nonlocal calls
        calls += 1
        raise _wrapped("23505")

    try:
        with pytest.raises(DBAPIError):
            await db.run(work)
    finally:
        await db.dispose()
    assert calls == 1


def test_use_cases_and_dispatcher_steps_write_only_through_run() -> None:
    """``db.transaction()`` does not retry: no use case or dispatcher step opens one itself."""
    files = [*sorted((SRC / "services").glob("*.py")), SRC / "dispatcher" / "steps.py"]
    offenders = [
        f"{path.name}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bdb\.transaction\(", line)
    ]
    assert offenders == []
