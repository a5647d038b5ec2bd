"""Models and migrations in step: migrate a fresh SQLite database to head, then have Alembic
compare it with ``assign.db.tables`` (``make lint`` runs it).

    python scripts/check_migrations.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from assign.db.migrate import alembic_config, upgrade


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'check.db'}"
        upgrade(url)
        command.check(alembic_config(url))  # raises when the tables and the migrations differ
    print("models and migrations in step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
