"""Alembic environment: runs migrations on the async engine of the configured URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from assign.db import dialect
from assign.db.migrate import engine_options
from assign.db.tables import metadata

config = context.config

#: indexes with an expression column (``priority DESC``): SQLite reflects them as plain
#: columns, so a comparison there would always report them changed (`alembic check`)
EXPRESSION_INDEXES = frozenset({"ix_links_status_priority_created_at_id"})


def _run(connection: Connection) -> None:
    def include_object(
        _obj: object, name: str | None, type_: str, _reflected: bool, _compare_to: object
    ) -> bool:
        if type_ == "index" and name in EXPRESSION_INDEXES:
            return dialect.reflects_expression_indexes(connection.dialect)
        return True

    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=dialect.alters_by_batch(connection.dialect),
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL configured")
    engine = create_async_engine(url, **engine_options(url))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `assign migrate`")
asyncio.run(_main())
