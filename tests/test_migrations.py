"""Migrations are expand-then-contract: an ``upgrade()`` after the initial schema only adds, so
``assign migrate`` can run while the previous release serves (docs/guarantees.md, "Upgrades")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = (
    Path(__file__).resolve().parent.parent / "src" / "assign" / "db" / "migrations" / "versions"
)
#: operations that remove or change what an older release may still use
CONTRACTING = {"drop_table", "drop_column", "alter_column", "rename_table", "drop_constraint"}


def upgrade_calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    (upgrade,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    return {
        node.func.attr
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }


@pytest.mark.parametrize(
    "path",
    sorted(p for p in VERSIONS.glob("*.py") if not p.name.startswith("0001")),
    ids=lambda p: p.stem,
)
def test_migrations_only_expand(path: Path) -> None:
    assert not upgrade_calls(path) & CONTRACTING, f"{path.name} contracts the schema"
    text = path.read_text().upper()
    for statement in ("DROP TABLE", "DROP COLUMN", "RENAME "):
        assert statement not in text.split("DEF DOWNGRADE")[0], (path.name, statement)
