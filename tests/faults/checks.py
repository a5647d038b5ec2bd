"""What the fault tests read back from the private PostgreSQL: stored batches, in-flight
counts, sessions and lock waiters."""

from __future__ import annotations

from tests.faults.conftest import FaultDatabase, PrivatePostgres
from tests.faults.load import Load


async def batch_counts(db: FaultDatabase) -> dict[str, int]:
    rows = await db.pg.fetch(
        "SELECT site_name, count(*) FROM links WHERE site_name LIKE 'batch-%' GROUP BY site_name",
        database=db.name,
    )
    return {r[0]: int(r[1]) for r in rows}


def assert_all_or_nothing(load: Load, counts: dict[str, int]) -> None:
    """Every batch is all there or absent; every batch answered 2xx is all there."""
    n = load.batch_size
    partial = {m: c for m, c in counts.items() if c not in (0, n)}
    assert not partial, f"batches stored partially (marker: rows of {n}): {partial}"
    unknown = set(counts) - set(load.batches)
    assert not unknown, f"rows of batches never sent: {sorted(unknown)[:5]}"
    lost = [
        m for m, s in load.batches.items() if s is not None and 200 <= s < 300 and m not in counts
    ]
    assert not lost, f"{len(lost)} batch(es) answered 2xx but not stored, e.g. {lost[:3]}"


async def assert_active_tasks_consistent(db: FaultDatabase) -> None:
    rows = await db.pg.fetch(
        """
        SELECT s.name, s.active_tasks, count(l.id) AS n FROM servers s
        LEFT JOIN links l ON l.server_id = s.id AND l.status IN ('queued', 'running', 'connecting')
        GROUP BY s.id HAVING s.active_tasks <> count(l.id)
        """,
        database=db.name,
    )
    assert not rows, f"active_tasks != in-flight links: {[tuple(r) for r in rows]}"


async def backends(pg: PrivatePostgres, database: str) -> int:
    rows = await pg.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return int(rows[0][0])


async def lock_waiters(db: FaultDatabase) -> int:
    """Sessions of the database waiting on a lock (asked on a connection of its own: within a
    transaction PostgreSQL would answer from a snapshot of the statistics)."""
    rows = await db.pg.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        db.name,
    )
    return int(rows[0][0])
