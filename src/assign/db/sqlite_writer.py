"""SQLite's write transactions, every one run whole on one thread of their own.

A write transaction on SQLite holds the database's only write lock from ``BEGIN IMMEDIATE``
to ``COMMIT``. Through the asynchronous driver each of its statements is a trip from the
event loop to the driver's thread and back, and on a busy event loop the way back waits
behind every other ready callback (HTTP requests being parsed, answers being written): the
lock was held about twice as long as its statements ran. Here the transaction's work (the
same coroutine function PostgreSQL runs) is driven on the writer thread against a
synchronous connection, start to finish without touching the event loop, so the lock is held
only for the statements and the Python between them.

The work never suspends: every call it makes on its connection is answered at once (the
coroutine finishes in one step). Work that waits on anything else is a programming error,
reported as such. What must touch the event loop (waking the dispatcher or waiting claims)
goes through :meth:`Writer.on_loop`, run there once the transaction has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

T = TypeVar("T")
log = logging.getLogger(__name__)

#: callbacks for the event loop queued by the transaction running on this thread
_after: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "assign_sqlite_after", default=None
)

#: the PRAGMAs every SQLite connection of Assign runs first
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def prepare(dbapi_conn: Any) -> None:
    """Transaction control taken from the driver (``BEGIN IMMEDIATE`` is ours to send) and
    the PRAGMAs run."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    for pragma in PRAGMAS:
        cur.execute(pragma)
    cur.close()


class ThreadConnection:
    """What a transaction's work is given on the writer thread: the calls of SQLAlchemy's
    ``AsyncConnection`` it uses, each answered at once by a synchronous connection."""

    def __init__(self, sync_connection: Connection) -> None:
        self.sync_connection = sync_connection

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_connection.dialect

    def get_execution_options(self) -> Any:
        return self.sync_connection.get_execution_options()

    async def execute(
        self, statement: Any, parameters: Any = None, *, execution_options: Any = None
    ) -> Any:
        return self.sync_connection.execute(
            statement, parameters, execution_options=execution_options
        )

    async def scalar(
        self, statement: Any, parameters: Any = None, *, execution_options: Any = None
    ) -> Any:
        return self.sync_connection.scalar(
            statement, parameters, execution_options=execution_options
        )

    async def scalars(
        self, statement: Any, parameters: Any = None, *, execution_options: Any = None
    ) -> Any:
        return self.sync_connection.scalars(
            statement, parameters, execution_options=execution_options
        )

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> Any:
        return self.sync_connection.exec_driver_sql(statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.sync_connection, *args, **kwargs)


def finish(coro: Coroutine[Any, Any, T]) -> T:
    """The value of a coroutine that never suspends, run in one step."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a SQLite write transaction waited on something other than its connection")


#: most transactions committed together (one ``COMMIT``, each in a savepoint of its own)
GROUP_MAX = 64
#: pause between two checkpoints of the checkpoint thread (commits in between are taken together)
CHECKPOINT_GAP = 0.05
#: the checkpoint both threads run: it never waits for readers or the writer
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
#: WAL frames (pages) past which the writer checkpoints itself after its next commit: the
#: checkpoint thread cannot always copy the whole WAL while the writer appends to it, and
#: the WAL starts again from its beginning only after a checkpoint that copied all of it
WAL_FRAMES_MAX = 16_000


class _Job:
    """One transaction asked of the writer thread, or (``release`` set) a pause of it."""

    __slots__ = ("context", "future", "release", "work")

    def __init__(
        self,
        future: asyncio.Future[Any],
        work: Callable[[Any], Awaitable[Any]] | None = None,
        release: threading.Event | None = None,
    ) -> None:
        self.future = future
        self.work = work
        self.context = contextvars.copy_context()
        self.release = release


_STOP = object()


class Writer:
    """One thread, one synchronous connection: every write transaction of :meth:`run` runs
    there whole, in the order asked for.

    Group commit: the transactions waiting when the thread comes free are run together, each
    in a savepoint of its own, under one ``BEGIN IMMEDIATE`` and one ``COMMIT`` (a commit
    writes every page the transaction changed to the WAL, and the pages of the servers,
    requests, counts and indexes are mostly the same ones). A transaction that fails is rolled
    back to its savepoint alone; the others commit. Each caller hears of its transaction only
    once the ``COMMIT`` is done, and a failed ``COMMIT`` fails them all (none was written).
    """

    def __init__(
        self, url: str, *, timeout: float, joined: contextvars.ContextVar[Any], owner: Any
    ) -> None:
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.engine = sa.create_engine(
            sync_url,
            connect_args={"timeout": timeout, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
        )
        event.listen(self.engine, "connect", lambda dbapi_conn, _record: self._prepare(dbapi_conn))
        event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self._joined = joined
        self._owner = owner
        self._path = make_url(url).database or ""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._wrote = threading.Event()
        self._stopping = threading.Event()
        self._behind = False

    @staticmethod
    def _prepare(dbapi_conn: Any) -> None:
        prepare(dbapi_conn)
        # the checkpoint thread copies the WAL back, not the commits (see _checkpoint)
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

    def on_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop: at once when called there, else (work on the
        writer thread) once its transaction has committed."""
        pending = _after.get()  # set only by work running on the writer thread
        if pending is None:
            callback()
        else:
            pending.append(callback)

    def _submit(self, job: _Job) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._stopping.clear()
                    self._thread = threading.Thread(
                        target=self._serve, name="assign-sqlite-writer", daemon=True
                    )
                    self._checkpointer = threading.Thread(
                        target=self._checkpoint, name="assign-sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
                    self._checkpointer.start()
        self._queue.put(job)

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work`` in a ``BEGIN IMMEDIATE`` transaction on the writer thread (perhaps with
        others, see the class); meanwhile ``joined`` names (``owner``, its connection), so a
        transaction asked for inside it joins it, as on the event loop. Cancelled before the
        thread takes it, it is never run."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submit(_Job(future, work))
        return await future

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """The writer thread kept waiting, so the event loop may write on a connection of its
        own, until the block ends."""
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        release = threading.Event()
        self._submit(_Job(waiting, release=release))
        try:
            await waiting
            yield
        finally:
            release.set()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._checkpointer is not None:
            self._stopping.set()
            self._wrote.set()
            self._checkpointer.join()
            self._checkpointer = None
        self.engine.dispose()

    # --- on the writer thread ----------------------------------------------------------------

    def _serve(self) -> None:
        carry: Any = None
        sync: Connection | None = None
        try:
            while True:
                job = carry if carry is not None else self._queue.get()
                carry = None
                if job is _STOP:
                    return
                if job.release is not None:
                    _deliver([(job.future, True, None, [])])
                    job.release.wait()
                    continue
                group = [job]
                while len(group) < GROUP_MAX:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP or more.release is not None:
                        carry = more
                        break
                    group.append(more)
                group = [j for j in group if not j.future.cancelled()]
                if not group:
                    continue
                try:
                    sync = self._connected(sync)
                except BaseException as exc:  # the file cannot be opened: tell them, go on
                    sync = None
                    _deliver([(each.future, False, exc, []) for each in group])
                    continue
                self._commit(sync, group)
                self._wrote.set()
                if self._behind:
                    self._behind = False
                    self._checkpoint_here(sync)
        finally:
            if sync is not None:
                with contextlib.suppress(Exception):
                    sync.close()

    def _connected(self, sync: Connection | None) -> Connection:
        """The writer's connection, opened again when the last one was lost."""
        if sync is not None and not (sync.closed or sync.invalidated):
            return sync
        if sync is not None:
            with contextlib.suppress(Exception):
                sync.close()
        return self.engine.connect()

    def _checkpoint_here(self, sync: Connection) -> None:
        try:
            driver = sync.connection.driver_connection
            assert driver is not None
            driver.execute(CHECKPOINT).fetchall()
        except Exception as exc:
            log.warning("checkpoint failed", extra={"error": type(exc).__name__})

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database shortly after commits, on a thread and a
        connection of its own (a passive checkpoint neither waits for the writer nor holds
        it up), so that no commit does it inline (SQLite's automatic checkpoint, turned off
        on the writer's connection, runs inside the commit that fills the WAL)."""
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wrote.wait()
                if self._stopping.is_set():
                    return
                self._wrote.clear()
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
                    _busy, frames, _copied = conn.execute(CHECKPOINT).fetchone()
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed", extra={"error": type(exc).__name__})
                else:
                    self._behind = frames > WAL_FRAMES_MAX
                self._stopping.wait(CHECKPOINT_GAP)
        finally:
            if conn is not None:
                conn.close()

    def _commit(self, sync: Connection, group: list[_Job]) -> None:
        done: list[tuple[_Job, bool, Any, list[Callable[[], None]]]] = []
        alone = len(group) == 1
        try:
            with sync.begin():
                for job in group:
                    if alone:
                        value, after = job.context.run(self._work, job, sync)
                        done.append((job, True, value, after))
                        continue
                    sync.exec_driver_sql("SAVEPOINT assign_job")
                    try:
                        value, after = job.context.run(self._work, job, sync)
                    except BaseException as exc:
                        sync.exec_driver_sql("ROLLBACK TO assign_job")
                        sync.exec_driver_sql("RELEASE assign_job")
                        done.append((job, False, exc, []))
                        continue
                    sync.exec_driver_sql("RELEASE assign_job")
                    done.append((job, True, value, after))
        except BaseException as exc:
            # nothing of the group was written; a COMMIT refused (a deferred constraint)
            # leaves SQLite's transaction open
            self._roll_back(sync)
            _deliver([(job.future, False, exc, []) for job in group])
            return
        _deliver([(job.future, ok, value, after) for job, ok, value, after in done])

    @staticmethod
    def _roll_back(sync: Connection) -> None:
        with contextlib.suppress(Exception):
            driver = sync.connection.driver_connection
            if driver is not None and driver.in_transaction:
                driver.rollback()
        with contextlib.suppress(Exception):
            sync.rollback()

    def _work(self, job: _Job, sync: Connection) -> tuple[Any, list[Callable[[], None]]]:
        after: list[Callable[[], None]] = []
        _after.set(after)
        conn = ThreadConnection(sync)
        self._joined.set((self._owner, conn))
        assert job.work is not None
        return finish(job.work(conn)), after  # type: ignore[arg-type]


def _deliver(
    settled: list[tuple[asyncio.Future[Any], bool, Any, list[Callable[[], None]]]],
) -> None:
    """Settle each (future, ok, value or error, callbacks) on its event loop, callbacks first,
    in order: one wake-up of each loop for them all."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for item in settled:
        by_loop.setdefault(item[0].get_loop(), []).append(item)

    def settle(items: list[Any]) -> None:
        for future, ok, value, after in items:
            for callback in after:
                callback()
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, items)
