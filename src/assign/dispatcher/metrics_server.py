"""``/metrics`` of ``assign dispatch``: a small HTTP/1.1 server on the dispatcher's own loop.

It answers ``GET /metrics`` (the same exposition as the API's, cluster-wide gauges included)
and ``GET /healthz``; anything else is a 404. One request per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from assign.services import gauges
from assign.services.context import Context

log = logging.getLogger("assign.dispatcher")


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _handle(ctx: Context, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
            pass  # headers are not needed
        parts = line.decode("latin-1").split()
        method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
        if method in ("GET", "HEAD") and path == "/metrics":
            answer = _response("200 OK", CONTENT_TYPE_LATEST, await gauges.exposition(ctx))
        elif method in ("GET", "HEAD") and path == "/healthz":
            answer = _response("200 OK", "application/json", b'{"success":true,"status":"ok"}')
        else:
            answer = _response("404 Not Found", "text/plain", b"not found\n")
        writer.write(answer)
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def start(ctx: Context, *, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) until the returned server is closed."""
    server = await asyncio.start_server(lambda r, w: _handle(ctx, r, w), host, port)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    log.info("dispatcher metrics listening", extra={"host": host, "port": bound})
    return server


async def run_with_metrics(
    ctx: Context, main: Callable[[Context], Awaitable[Any]], *, host: str, port: int | None
) -> Any:
    """Run ``main(ctx)`` (the dispatcher) with ``/metrics`` served beside it (not when
    ``port`` is None)."""
    server = None
    if port is not None:
        try:
            server = await start(ctx, host=host, port=port)
        except OSError as exc:
            # a second dispatcher on one host (a stand-by) finds the port taken: it dispatches
            # all the same, and says where its metrics are not
            log.warning(
                "dispatcher metrics not served: port %s unavailable (set ASSIGN_METRICS_PORT)",
                port,
                extra={"port": port, "error": exc.strerror or type(exc).__name__},
            )
    try:
        return await main(ctx)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
