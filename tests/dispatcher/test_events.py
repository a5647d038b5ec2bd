"""What the dispatcher logs: one INFO per tick that changed something, one WARNING per lost
server, one INFO per change of leadership; structured fields, no secret."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from assign.clock import FrozenClock
from assign.dispatcher.events import log_tick
from assign.dispatcher.loop import run_dispatcher
from assign.dispatcher.steps import TickReport, tick
from assign.domain.states import RequestStatus
from assign.logging import JSONFormatter
from assign.services.context import Context
from tests.dispatcher.test_tick import heartbeat, no_rate_limit
from tests.factories import Factory


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "assign.dispatcher" and r.msg == message]


def no_secret(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    formatter = JSONFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        for secret in secrets:
            assert secret not in line


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"dispatch_interval": 0.05}


async def test_tick_and_lost_server_lines(
    ctx: Context, clock: FrozenClock, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assign.dispatcher")
    await no_rate_limit(factory)
    dead = await factory.server(max_threads=2, name="worker-7")
    await heartbeat(factory, dead)
    request = await factory.request()
    await factory.links(request, 3)
    stop = asyncio.Event()
    loop = asyncio.create_task(run_dispatcher(ctx, stop=stop))
    try:
        for _ in range(100):
            if records(caplog, "dispatcher tick"):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=10)
    (line, *rest) = records(caplog, "dispatcher tick")
    assert line.levelno == logging.INFO
    assert line.assigned == 2 and line.started == 1  # type: ignore[attr-defined]
    assert not rest  # the ticks after it changed nothing and said nothing
    leading = records(caplog, "dispatcher became leader")
    assert len(leading) == 1 and leading[0].levelno == logging.INFO
    assert len(records(caplog, "dispatcher stopped leading")) == 1

    await factory.claim(dead, limit=1)
    clock.advance(minutes=6)
    caplog.clear()
    await tick(ctx)
    (lost,) = records(caplog, "server lost: no heartbeat")
    assert lost.levelno == logging.WARNING
    assert lost.server_name == "worker-7"  # type: ignore[attr-defined]
    assert lost.links_released == 1 and lost.links_failed == 1  # type: ignore[attr-defined]
    no_secret(caplog, dead["api_key"], "s3cret-pass")


def test_a_tick_that_closes_requests_is_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="assign.dispatcher")
    report = TickReport(finished={RequestStatus.COMPLETED: 2, RequestStatus.FAILED: 1})
    log_tick(report, seconds=0.01, full=True)
    (line,) = records(caplog, "dispatcher tick")
    entry = orjson.loads(JSONFormatter().format(line))
    assert entry["finished"] == {"completed": 2, "failed": 1}
