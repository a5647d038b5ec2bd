"""The per-link load's HTTP client: hand-encoded HTTP/1.1 over one keep-alive connection
(a simulated tool server costs the load generator little, so the figures are Assign's)."""

from __future__ import annotations

import asyncio


class Http1:
    """A cheap HTTP/1.1 client for the load: requests encoded by hand, sent over keep-alive
    connections (at most ``size``, each carrying one request at a time), answers read by their
    ``content-length``. httpx spends about 2 ms of CPU a request here, as much as the API
    itself, and the load generator shares the machine's cores with what it measures."""

    def __init__(self, base: str, key: str, size: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.head = b"\r\nhost: %s\r\nx-api-key: %s\r\ncontent-type: application/json\r\n" % (
            base.removeprefix("http://").encode(),
            key.encode(),
        )
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)
        self.open: set[asyncio.StreamWriter] = set()

    async def call(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one request."""
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.open.add(writer)
            try:
                writer.write(
                    b"%s %s HTTP/1.1%scontent-length: %d\r\n\r\n%s"
                    % (method, path, self.head, len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                at = head.lower().find(b"\r\ncontent-length:")
                if at < 0:
                    raise RuntimeError("an answer without content-length")
                length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
                content = await reader.readexactly(length)
            except BaseException:
                self.open.discard(writer)
                writer.close()
                raise
            self.idle.append((reader, writer))
            return status, content

    def close(self) -> None:
        for writer in self.open:
            writer.close()
        self.open.clear()
        self.idle.clear()
