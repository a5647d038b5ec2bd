"""SQLite's write transactions run whole on the writer thread (``db.sqlite_writer``): those
waiting together commit together, each failing alone; the event loop hears of each only once
it committed; nothing the loop writes itself runs beside them; the WAL is copied back by a
thread of its own and stays bounded."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from assign.db import sqlite_writer
from assign.db.engine import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/w.db")
    async with database.transaction() as conn:
        await conn.execute(sa.text("CREATE TABLE parents (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            sa.text("CREATE TABLE t (x INTEGER, parent INTEGER REFERENCES parents (id))")
        )
    try:
        yield database
    finally:
        await database.dispose()


def _writer(db: Database) -> sqlite_writer.Writer:
    assert db._writer is not None
    return db._writer


def _commits(db: Database) -> list[int]:
    seen: list[int] = []
    event.listen(_writer(db).engine, "commit", lambda _conn: seen.append(1))
    return seen


async def _values(db: Database) -> list[int]:
    async with db.read() as conn:
        return [r[0] for r in (await conn.execute(sa.text("SELECT x FROM t ORDER BY x"))).all()]


def _insert(x: int) -> Any:
    async def work(conn: Any) -> int:
        await conn.execute(sa.text("INSERT INTO t (x) VALUES (:x)"), {"x": x})
        return x * 10

    return work


async def _fail_after_insert(conn: Any) -> None:
    await conn.execute(sa.text("INSERT INTO t (x) VALUES (99)"))
    raise ValueError("refused")


async def test_transactions_waiting_together_commit_together_and_fail_alone(db: Database) -> None:
    commits = _commits(db)
    async with _writer(db).held():  # every one of them waits for the writer thread
        calls = [
            asyncio.ensure_future(db.run(_insert(1))),
            asyncio.ensure_future(db.run(_fail_after_insert)),
            asyncio.ensure_future(db.run(_insert(2))),
            asyncio.ensure_future(db.run(_insert(3))),
        ]
        await asyncio.sleep(0.05)
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert answers[0] == 10 and answers[2] == 20 and answers[3] == 30
    assert isinstance(answers[1], ValueError)
    assert await _values(db) == [1, 2, 3]  # the failed one's insert was rolled back alone
    assert len(commits) == 1


async def test_a_failed_commit_fails_every_transaction_of_its_group(db: Database) -> None:
    async def orphan(conn: Any) -> None:
        # a foreign key checked at COMMIT: the group's COMMIT fails
        await conn.execute(sa.text("PRAGMA defer_foreign_keys = ON"))
        await conn.execute(sa.text("INSERT INTO t (x, parent) VALUES (7, 12345)"))

    async with _writer(db).held():
        calls = [
            asyncio.ensure_future(db.run(_insert(1))),
            asyncio.ensure_future(db.run(orphan)),
            asyncio.ensure_future(db.run(_insert(2))),
        ]
        await asyncio.sleep(0.05)
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(a, sa.exc.IntegrityError) for a in answers), answers
    assert await _values(db) == []  # none of the group was written
    assert await db.run(_insert(4)) == 40  # and the writer goes on
    assert await _values(db) == [4]


async def test_a_transaction_cancelled_before_the_writer_takes_it_never_runs(
    db: Database,
) -> None:
    async with _writer(db).held():
        call = asyncio.ensure_future(db.run(_insert(5)))
        await asyncio.sleep(0.02)
        call.cancel()
        await asyncio.sleep(0.02)
    assert await db.run(_insert(6)) == 60
    assert call.cancelled()
    assert await _values(db) == [6]


async def test_what_a_transaction_asks_of_the_event_loop_runs_there_once_it_committed(
    db: Database,
) -> None:
    loop_thread = threading.get_ident()
    ran: list[tuple[bool, int]] = []

    def seen() -> None:
        # on the loop, with the transaction's rows committed (a new connection sees them)
        import sqlite3

        with sqlite3.connect(str(db.engine.url.database)) as plain:
            count = plain.execute("SELECT count(*) FROM t").fetchone()[0]
        ran.append((threading.get_ident() == loop_thread, count))

    async def work(conn: Any) -> None:
        await conn.execute(sa.text("INSERT INTO t (x) VALUES (1)"))
        db.on_loop(seen)
        assert ran == []  # not yet: the transaction is still open

    async def refused(conn: Any) -> None:
        db.on_loop(seen)
        raise ValueError("refused")

    await db.run(work)
    assert ran == [(True, 1)]
    with pytest.raises(ValueError):
        await db.run(refused)
    await asyncio.sleep(0.02)
    assert ran == [(True, 1)]  # a transaction rolled back asks nothing of the loop


async def test_work_that_waits_on_anything_but_its_connection_is_refused(db: Database) -> None:
    async def waits(conn: Any) -> None:
        await conn.execute(sa.text("INSERT INTO t (x) VALUES (1)"))
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waited on something other than its connection"):
        await db.run(waits)
    assert await _values(db) == []


async def test_a_transaction_of_the_event_loop_runs_while_the_writer_waits(db: Database) -> None:
    async def slow(conn: Any) -> None:
        await conn.execute(sa.text("INSERT INTO t (x) VALUES (1)"))
        await conn.execute(
            sa.text(
                "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 200000) "
                "SELECT count(*) FROM c"
            )
        )

    async def on_loop() -> None:
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (x) VALUES (2)"))

    await asyncio.gather(*(db.run(slow) for _ in range(3)), on_loop(), db.run(_insert(3)))
    assert sorted(await _values(db)) == [1, 1, 1, 2, 3]


async def test_the_wal_is_copied_back_off_the_writer_and_stays_bounded(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_writer, "WAL_FRAMES_MAX", 200)
    blob = os.urandom(20_000)

    async def big(conn: Any) -> None:
        await conn.execute(sa.text("INSERT INTO t (x) VALUES (length(:b))"), {"b": blob})
        await conn.execute(sa.text("DELETE FROM t"))
        await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS blobs (b BLOB)"))
        await conn.execute(sa.text("DELETE FROM blobs"))
        await conn.execute(sa.text("INSERT INTO blobs VALUES (:b)"), {"b": blob})

    for _ in range(600):  # 12 MB through the WAL
        await db.run(big)
    wal = os.path.getsize(f"{db.engine.url.database}-wal")  # noqa: ASYNC240
    # it started again from its beginning, again and again: without checkpoints it ends at
    # 17 MB; with them under 4 MB on a quiet machine, 5.7 MB seen in a loaded CI run (the
    # checkpoint thread, which tells the writer the WAL is long, waits for a core)
    assert wal < 9_000_000
