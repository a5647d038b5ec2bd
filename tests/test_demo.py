"""``assign demo`` in a small configuration, to the end, against ``assign serve`` and its
dispatcher (on a temporary SQLite database and a port of 8200-8299)."""

from __future__ import annotations

import importlib.util
import io

import pytest
from rich.console import Console

from assign.demo import run as demo_run
from assign.demo import service

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("assign.dispatcher.loop") is None,
        reason="the demo needs the dispatcher (assign.dispatcher.loop), which is not there yet",
    ),
]


def test_small_demo_runs_to_completion() -> None:
    config = demo_run.DemoConfig(
        links=240,
        servers=3,
        accounts=16,
        task_seconds=0.1,
        cooldown_seconds=0.1,
        timeout=150,
        port=service.free_port(range(8200, 8300)),
        seed=7,
        live=False,
    )
    out = io.StringIO()
    summary = demo_run.main(config, Console(file=out, width=140))

    assert summary.finished, out.getvalue()
    assert set(summary.campaigns.values()) == {"completed"}
    assert summary.links == 240
    assert summary.completed + summary.canceled == 240
    assert summary.dispatched >= 240
    assert summary.retried > 0  # about one link in ten fails, and lost links are retried
    # one server died with work in hand: the dispatcher took all of it back
    assert summary.dead_server is not None
    assert summary.left_on_dead == 0
    assert summary.rescued_lost > 0 or summary.abandoned == 0
    assert "every campaign closed by the dispatcher" in out.getvalue()
