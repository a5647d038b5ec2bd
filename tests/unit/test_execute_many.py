"""``dialect.execute_many`` (SQLite's executemany of a statement compiled once) stores exactly
what SQLAlchemy's own executemany of the same statement stores."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from assign.db import dialect
from assign.db.engine import Database
from assign.db.repositories.dispatch import _PLACE_SQLITE
from assign.db.repositories.tool import _FINISH_SQLITE
from assign.db.tables import links

NOW = datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=UTC)


async def _stored(db: Database, ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """The stored text of each link's row, without its id, in the order given."""
    async with db.read() as conn:
        rows = {
            r[0]: tuple(r[1:]) for r in (await conn.exec_driver_sql("SELECT * FROM links")).all()
        }
    return [rows[i.hex] for i in ids]


async def _seed(db: Database, n: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    server = uuid.UUID(int=1)
    request = uuid.UUID(int=2)
    ids = [uuid.UUID(int=100 + i) for i in range(n)]
    stamp = "2026-12-01 10:00:00.000000"
    async with db.transaction() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO servers (id, name, service, status, max_threads, service_types, "
            "api_key_hash, active_tasks, active_threads, priority, created_at, updated_at) "
            f"VALUES ('{server.hex}', 's', 'entity', 'online', 9, '[]', 'h', 0, 0, 0, "
            f"'{stamp}', '{stamp}')"
        )
        await conn.exec_driver_sql(
            "INSERT INTO requests (id, service_type, name, status, type_request, priority, "
            f"created_links, created_at, updated_at) VALUES ('{request.hex}', 'entity', 'r', "
            f"'running', 'normal', 0, 0, '{stamp}', '{stamp}')"
        )
        for link_id in ids:
            await conn.exec_driver_sql(
                "INSERT INTO links (id, request_id, service_type, status, phase, priority, "
                "retry_count, max_retries, details, created_at, updated_at) VALUES "
                f"('{link_id.hex}', '{request.hex}', 'entity', 'pending', 'create', 0, 0, 3, "
                f"'{{\"kept\": 1}}', '{stamp}', '{stamp}')"
            )
    return ids, server


def _outcomes(ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    kinds = [
        ("completed", None, None, "https://p/1", None, None),
        ("failed", "timeout", NOW + timedelta(minutes=5), None, None, {"step": "login"}),
        ("completed", None, None, None, "https://p/2", {"ünï": ["code", 1.5, None]}),
        ("failed", "bad 'quote'", None, None, None, None),
    ]
    out = []
    for i, link_id in enumerate(ids):
        status, error, retry_at, profile, post, details = kinds[i % len(kinds)]
        out.append(
            {
                "now": NOW,
                "b_id": link_id,
                "b_status": status,
                "b_error": error,
                "b_retry_at": retry_at,
                "b_profile": profile,
                "b_post": post,
                "b_keep": details is None,
                "b_details": details,
            }
        )
    return out


async def test_a_placement_and_a_batch_of_results_store_what_sqlalchemy_stores(
    sqlite_template: Path, tmp_path: Path
) -> None:
    stores = []
    for way in ("sqlalchemy", "execute_many"):
        path = tmp_path / f"{way}.db"
        shutil.copy(sqlite_template, path)
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            ids, server = await _seed(db, 12)
            placements = [{"b_id": i, "b_server": server, "now": NOW} for i in ids]
            results = _outcomes(ids)

            steps = ((_PLACE_SQLITE, placements), (_FINISH_SQLITE, results))

            async def work(conn: Any, way: str = way, steps: Any = steps) -> None:
                for statement, rows in steps:
                    if way == "sqlalchemy":
                        await conn.execute(statement, rows)
                    else:
                        await dialect.execute_many(conn, statement, rows)

            await db.run(work)
            stores.append(await _stored(db, ids))
        finally:
            await db.dispose()
    assert stores[0] == stores[1]
    # and the statements did what they say (not two identical no-ops)
    by_column = dict(
        zip([c.name for c in links.columns][1:], zip(*stores[0], strict=True), strict=True)
    )
    assert set(by_column["status"]) == {"completed", "failed"}
    assert by_column["server_id"][0] is not None
    assert by_column["details"][0] == '{"kept": 1}'  # kept when a result brings none
    assert any(v is not None and "login" in v for v in by_column["details"])
