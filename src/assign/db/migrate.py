"""Schema migrations (Alembic), callable from the CLI and from tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from assign.settings import normalize_database_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_database_url(url).replace("%", "%%"))
    return cfg


def engine_options(url: str) -> dict[str, Any]:
    """``create_async_engine`` options of a short-lived engine (migrations, the schema check):
    on PostgreSQL, safe through a pooler in transaction mode (see assign.db.connect)."""
    if url.startswith("sqlite"):
        return {}
    from sqlalchemy.pool import NullPool

    from assign.db.connect import POOLER_SAFE_ARGS

    return {"poolclass": NullPool, "connect_args": dict(POOLER_SAFE_ARGS)}


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema at ``url`` up to ``revision`` (blocking; runs its own event loop); the
    revisions before and after (``None``: never migrated).

    Refuses (:class:`SchemaTooNew`) a database that a newer release has migrated."""
    before = asyncio.run(current_revision(url))
    check_not_newer(before)
    command.upgrade(alembic_config(url), revision)
    return before, asyncio.run(current_revision(url))


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def known_revisions() -> set[str]:
    """Every revision this release's migrations know."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""

    def __init__(self, found: str) -> None:
        super().__init__(
            f"The database schema is at revision {found}, newer than this Assign "
            f"{_version()} knows (its newest is {head_revision()}): run the release that "
            "migrated it, or upgrade Assign"
        )
        self.found = found


def _version() -> str:
    from assign import __version__

    return __version__


def check_not_newer(current: str | None) -> None:
    """Raise :class:`SchemaTooNew` when ``current`` is a revision this release does not know."""
    if current is not None and current not in known_revisions():
        raise SchemaTooNew(current)


async def current_revision(url: str) -> str | None:
    """The schema revision stored in the database, or None when it was never migrated."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, **engine_options(url))
    try:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    finally:
        await engine.dispose()
