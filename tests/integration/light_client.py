"""An HTTP/1.1 client just big enough for the simulated fleet of :mod:`tests.integration.fleet`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson


class Reply:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class LightClient:
    """Just enough HTTP/1.1 for the simulated fleet: JSON bodies and keep-alive connections to
    one address, for a fraction of httpx's CPU per call (the fleet makes thousands of calls, on
    the CPUs the processes under test need). Failures in transit raise ``httpx.TransportError``."""

    #: an idle connection older than this is not reused: the API closes idle ones after 5 s
    IDLE_SECONDS = 2.0

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            used, reader, writer = self._idle.pop()
            if now - used < self.IDLE_SECONDS:
                return reader, writer
            writer.close()
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise httpx.ConnectError(repr(exc)) from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        within: float = 30.0,
    ) -> Reply:
        payload = b"" if json is None else orjson.dumps(json)
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(payload)}",
        ]
        if json is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        reader, writer = await self._connection()
        close = False
        try:
            async with asyncio.timeout(within):
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
                await writer.drain()
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed before an answer")
                status = int(status_line.split(b" ", 2)[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection":
                        close = value.strip().lower() == b"close"
                content = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as exc:
            writer.close()
            raise httpx.ReadError(repr(exc)) from exc
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self._idle.append((time.monotonic(), reader, writer))
        return Reply(status, content)

    async def get(self, path: str, *, headers: dict[str, str]) -> Reply:
        return await self.request("GET", path, headers=headers)

    async def post(self, path: str, *, json: Any, headers: dict[str, str]) -> Reply:
        return await self.request("POST", path, json=json, headers=headers)

    async def put(self, path: str, *, json: Any, headers: dict[str, str]) -> Reply:
        return await self.request("PUT", path, json=json, headers=headers)

    def close(self) -> None:
        for _, _, writer in self._idle:
            writer.close()
        self._idle.clear()
