"""The Makefile: every target installs Assign the same way, so `make serve` and `make test` never
replace each other's code; the README's two commands stay what the Makefile runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("serve", "test", "test-deep", "demo", "cluster")


def dry_run(target: str) -> str:
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_target_installs_editable() -> None:
    installs = {}
    for target in TARGETS:
        lines = [line for line in dry_run(target).splitlines() if "pip install" in line]
        assert lines, f"make {target} installs nothing"
        installs[target] = [re.search(r"pip install (-q )?(\S+)", line) for line in lines]
        for match in installs[target]:
            assert match is not None and match.group(2) == "-e", (target, lines)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_deep_tests_and_cluster() -> None:
    assert "ASSIGN_TEST_DEEP=1" in dry_run("test-deep") and "pytest" in dry_run("test-deep")
    assert "deploy/cluster.py" in dry_run("cluster")
    readme = (ROOT / "README.md").read_text()
    assert "make serve   # = pip install -e . && assign serve" in readme
    assert "make test    # = pip install -e '.[test]' && python -m pytest" in readme
