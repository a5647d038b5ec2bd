"""The checks after ``bench/load.py``'s run: the answers, each process's exit and log, and
the database's invariants."""

from __future__ import annotations

import asyncio

import asyncpg
from load_clients import EXPECTED, Stats
from load_cluster import Cluster, errors

INVARIANTS = {
    "active_tasks = in-flight links, per server": """
        SELECT count(*) FROM servers s
        WHERE s.active_tasks <> (SELECT count(*) FROM links l WHERE l.server_id = s.id
                                 AND l.status IN ('queued', 'running', 'connecting'))""",
    "created_links = completed create-phase links, per request": """
        SELECT count(*) FROM requests r
        WHERE r.created_links <> (SELECT count(*) FROM links l WHERE l.request_id = r.id
                                  AND l.phase = 'create' AND l.status = 'completed')""",
    "no pending link with a server": """
        SELECT count(*) FROM links WHERE status = 'pending' AND server_id IS NOT NULL""",
    "no in-flight link without a server": """
        SELECT count(*) FROM links
        WHERE status IN ('queued', 'running', 'connecting') AND server_id IS NULL""",
    "no link both finished and in flight": """
        SELECT count(*) FROM links
        WHERE (completed_at IS NOT NULL AND phase = 'create' AND status <> 'completed')
           OR (status = 'completed' AND completed_at IS NULL)""",
}


async def check(url: str, stats: Stats) -> list[tuple[str, bool, str]]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            results = []
            for name, sql in INVARIANTS.items():
                bad = await conn.fetchval(sql)
                results.append((name, bad == 0, f"{bad} violating row(s)" if bad else "ok"))
            ids = stats.completed_ids
            dup = len(ids) - len(set(ids))
            completed = await conn.fetchval("SELECT count(*) FROM links WHERE status = 'completed'")
            done = await conn.fetchval(
                "SELECT count(*) FROM links WHERE status = 'completed' AND id = ANY($1::uuid[])",
                list(set(ids)),
            )
            ok = dup == 0 and completed == len(set(ids)) == done
            results.append(
                (
                    "links completed by tool servers = completed links, each once",
                    ok,
                    f"{len(ids)} answered 200 ({dup} twice), {completed} completed in the database",
                )
            )
            totals = await conn.fetch("SELECT status, count(*) FROM links GROUP BY status")
            results.append(
                ("links by status", True, ", ".join(f"{r[0]} {r[1]}" for r in sorted(totals)))
            )
    finally:
        await conn.close()
    return results


def checks_of(cluster: Cluster, url: str, stats: Stats) -> list[tuple[str, bool, str]]:
    """The answers, each process's exit and log, then the database's invariants."""
    unexpected = {
        (op, s): n
        for (op, s), n in stats.status.items()
        if (op, s) not in EXPECTED and not (isinstance(s, int) and s < 300)
    }
    checks: list[tuple[str, bool, str]] = [
        (
            "only 2xx answers, and 409 to assigns",
            not unexpected,
            "ok" if not unexpected else f"{unexpected}; e.g. {stats.samples[:3]}",
        )
    ]
    for proc in cluster.procs:
        logged_errors = errors(proc)
        code = cluster.exit_codes.get(proc.name)
        checks.append(
            (
                f"{proc.name}: exit 0 on SIGTERM, no error logged",
                code == 0 and not logged_errors,
                f"exit {code}, {len(logged_errors)} error line(s)"
                + (f": {logged_errors[0][:300]}" if logged_errors else ""),
            )
        )
    return checks + asyncio.run(check(url, stats))
