"""assign.worker against a real application (ASGI transport, or uvicorn on 127.0.0.1 for the
command line), on both databases, with the dispatcher running."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from assign.app import create_app
from assign.client.types import ClaimedLink
from assign.dispatcher.loop import run_dispatcher
from assign.services.context import Context
from assign.worker import Result, Worker
from tests.factories import Factory
from tests.invariants import assert_active_tasks_consistent

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def dispatching(ctx: Context) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_dispatcher(ctx, stop=stop))
    yield
    stop.set()
    await task


def _worker(
    ctx: Context, server: dict[str, Any], handler: Any, app: Any = None, **kw: Any
) -> Worker:
    transport = httpx.ASGITransport(app=app or create_app(context=ctx, migrate=False))
    return Worker("http://assign.test", server["api_key"], handler, transport=transport, **kw)


async def _until(
    factory: Factory, request: dict[str, Any], status: str, n: int, seconds: float = 30
) -> None:
    for _ in range(int(seconds * 20)):
        done = await factory.list_links(request_id=request["id"], status=status)
        if len(done) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} links {status}")


async def _finished(
    factory: Factory, ctx: Context, request: dict[str, Any], server: dict[str, Any], n: int
) -> None:
    assert (await factory.get_server(server["id"]))["active_tasks"] == 0
    assert (await factory.get_request(request["id"]))["created_links"] == n
    await assert_active_tasks_consistent(ctx)


async def test_async_handler_runs_every_link(
    factory: Factory, ctx: Context, dispatching: None
) -> None:
    server = await factory.server(max_threads=4)
    request = await factory.request()
    await factory.links(request, 25)
    seen: list[str] = []
    running = 0
    most = 0

    async def handler(link: ClaimedLink) -> Result:
        nonlocal running, most
        running += 1
        most = max(most, running)
        seen.append(link["id"])
        await asyncio.sleep(0.01)
        running -= 1
        return Result(profile_url="https://p.test/1")

    stop = asyncio.Event()
    worker = _worker(ctx, server, handler, wait_seconds=2)
    run = asyncio.create_task(worker.run(stop))
    await _until(factory, request, "completed", 25)
    stop.set()
    tally = await asyncio.wait_for(run, 10)
    assert (tally.claimed, tally.completed, tally.failed, tally.rejected) == (25, 25, 0, 0)
    assert len(set(seen)) == 25 and 1 < most <= 4  # concurrent, within max_threads
    await _finished(factory, ctx, request, server, 25)


async def test_sync_handler_runs_in_threads_and_failures_report(
    factory: Factory, ctx: Context, dispatching: None
) -> None:
    server = await factory.server(max_threads=3)
    request = await factory.request()
    links = await factory.links(request, 9)
    threads: set[str] = set()
    main = threading.current_thread().name

    def handler(link: ClaimedLink) -> Result | None:
        threads.add(threading.current_thread().name)
        if link["site_name"] == "site0.example":
            raise RuntimeError("site is down")
        if link["site_name"] == "site1.example":
            return Result.failed("captcha", profile_url="https://kept.not/1")
        return None  # completed

    stop = asyncio.Event()
    run = asyncio.create_task(_worker(ctx, server, handler, wait_seconds=2).run(stop))
    await _until(factory, request, "completed,failed", 9)
    stop.set()
    tally = await asyncio.wait_for(run, 10)
    assert (tally.completed, tally.failed) == (7, 2)
    assert main not in threads
    by_site = {
        lk["site_name"]: lk
        for lk in await factory.list_links(request_id=request["id"], status="failed")
    }
    assert by_site["site0.example"]["error"] == "RuntimeError: site is down"
    assert (by_site["site1.example"]["error"], by_site["site1.example"]["profile_url"]) == (
        "captcha",
        None,
    )
    assert len(links) == 9
    await _finished(factory, ctx, request, server, 7)


async def test_busy_service_is_retried_with_back_off(
    factory: Factory, ctx: Context, dispatching: None
) -> None:
    server = await factory.server(max_threads=5)
    request = await factory.request()
    await factory.links(request, 10)
    inner = create_app(context=ctx, migrate=False)
    refused = {"claim": 2, "results": 3}

    async def flaky(scope: Any, receive: Any, send: Any) -> None:
        for name in refused:
            if (
                scope["type"] == "http"
                and scope["path"].endswith(f"/links/{name}")
                and refused[name]
            ):
                refused[name] -= 1
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0")],
                    }
                )
                await send(
                    {"type": "http.response.body", "body": b'{"success":false,"error":"busy"}'}
                )
                return
        await inner(scope, receive, send)

    stop = asyncio.Event()
    run = asyncio.create_task(_worker(ctx, server, _complete, app=flaky, wait_seconds=2).run(stop))
    await _until(factory, request, "completed", 10)
    stop.set()
    tally = await asyncio.wait_for(run, 10)
    assert refused == {"claim": 0, "results": 0}
    assert tally.retries >= 5 and tally.completed == 10 and tally.rejected == 0
    await _finished(factory, ctx, request, server, 10)


async def _complete(link: ClaimedLink) -> Result:
    return Result()


async def test_stop_finishes_and_reports_what_it_holds(
    factory: Factory, ctx: Context, dispatching: None
) -> None:
    server = await factory.server(max_threads=3)
    request = await factory.request()
    await factory.links(request, 3)
    release = asyncio.Event()

    async def handler(link: ClaimedLink) -> Result:
        await release.wait()
        return Result()

    stop = asyncio.Event()
    worker = _worker(ctx, server, handler, wait_seconds=2)
    run = asyncio.create_task(worker.run(stop))
    await _until(factory, request, "running", 3)
    stop.set()
    await asyncio.sleep(0.3)
    later = await factory.request()
    await factory.links(later, 2)
    assert not run.done()  # still holding its links
    release.set()
    tally = await asyncio.wait_for(run, 10)
    assert (tally.claimed, tally.completed) == (3, 3)
    await _finished(factory, ctx, request, server, 3)
    # nothing claimed after the stop
    assert not await factory.list_links(request_id=later["id"], status="running,completed")


class _CountingTransport(httpx.ASGITransport):
    """The application's transport, with the result calls it carried (their sizes)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app=app)
        self.batches: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/links/results"):
            self.batches.append(len(orjson.loads(request.content)["results"]))
        return await super().handle_async_request(request)


async def _all_queued(
    factory: Factory, server: dict[str, Any], request: dict[str, Any], n: int
) -> None:
    """The server has beaten and the dispatcher placed all ``n`` links on it, so the worker's
    first claim takes them all."""
    beat = await factory.client.post("/api/v1/tool/heartbeat", headers=factory.tool(server))
    assert beat.status_code == 200, beat.text
    await _until(factory, request, "queued", n)


async def test_results_go_as_soon_as_no_handler_runs(
    factory: Factory, ctx: Context, dispatching: None
) -> None:
    """With a flush far away, a batch goes once no handler is left running; while one still
    runs, the results already made wait for it (and go in the same call)."""
    server = await factory.server(max_threads=5)
    request = await factory.request()
    await factory.links(request, 5)
    await _all_queued(factory, server, request, 5)
    release = asyncio.Event()
    started = 0

    async def handler(link: ClaimedLink) -> Result:
        nonlocal started
        started += 1
        if started == 1:
            await release.wait()
        return Result()

    transport = _CountingTransport(create_app(context=ctx, migrate=False))
    worker = Worker(
        "http://assign.test", server["api_key"], handler, transport=transport,
        wait_seconds=2, flush_seconds=3600,
    )  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    try:
        await _until(factory, request, "running", 5)
        for _ in range(20):  # the four quick handlers are done; their results wait for the fifth
            await asyncio.sleep(0.01)
        assert transport.batches == []
        release.set()
        await _until(factory, request, "completed", 5)  # long before the flush
        assert transport.batches == [5]
    finally:
        stop.set()
        if not release.is_set():
            worker.abandon()
    tally = await asyncio.wait_for(run, 10)
    assert (tally.claimed, tally.completed) == (5, 5)
    await _finished(factory, ctx, request, server, 5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_command_line_worker_exits_cleanly_on_sigterm(
    factory: Factory, ctx: Context, dispatching: None
) -> None:
    server = await factory.server(max_threads=4)
    request = await factory.request()
    await factory.links(request, 4)
    port = _free_port()
    config = uvicorn.Config(
        create_app(context=ctx, migrate=False),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    web = uvicorn.Server(config)
    serving = asyncio.create_task(web.serve())
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "ASSIGN_WORKER_KEY": server["api_key"],
        "ASSIGN_TEST_HOLD_SECONDS": "1.5",
    }
    try:
        for _ in range(500):
            if web.started:
                break
            await asyncio.sleep(0.02)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "assign", "worker", "tests.worker.handlers:slow",
            "--url", f"http://127.0.0.1:{port}", env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await _until(factory, request, "running", 4)
        proc.send_signal(signal.SIGTERM)
        out, errors = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, errors.decode()
        assert "completed 4" in out.decode()
    finally:
        web.should_exit = True
        await serving
    assert len(await factory.list_links(request_id=request["id"], status="completed")) == 4
    await _finished(factory, ctx, request, server, 4)
