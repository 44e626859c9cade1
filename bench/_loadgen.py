"""A lean HTTP/1.1 load generator: one keep-alive connection per client, requests written as
prepared bytes, answers parsed by httptools (the C parser uvicorn uses).

Why not aiohttp or httpx: the load generator runs on the same 2 cores as what it measures, and
every millisecond of CPU it spends per request is taken from the service, the gateway and
PostgreSQL. The peer, pgledger, is driven by bare asyncpg; this is the HTTP counterpart, as wrk
is to nginx. It speaks only what the benchmarks need: Content-Length bodies and chunked answers,
no redirects, no TLS.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import httptools


class _Answer(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), body))


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        fixed = {"Host": f"{self.host}:{self.port}", "Connection": "keep-alive", **headers}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._proto: _Answer | None = None

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        if self._proto is None or self._proto.transport is None or self._proto.transport.is_closing():
            _, self._proto = await asyncio.get_running_loop().create_connection(_Answer, self.host, self.port)
        proto = self._proto
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        extra = f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n" if body is not None else ""
        proto.waiter = asyncio.get_running_loop().create_future()
        proto.transport.write(
            f"{method} {self.prefix}/{path.lstrip('/')} HTTP/1.1\r\n{self._head}{extra}\r\n".encode("latin-1") + data
        )
        return await proto.waiter

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
