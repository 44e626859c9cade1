"""The services behind the gateway: one pooled connection pool, several base URLs per service.

Requests go round robin over a service's replicas. A replica that refuses the
connection is skipped for `unhealthy_seconds` and the request moves on to the
next one; that is always safe because nothing was sent. Any other failure is
the caller's to report (503 when no replica answers, 504 when one is too slow).

The proxy sends through the httpx transport (the connection pool) directly:
cookies, redirects and auth flows are client features a reverse proxy must not
apply, and skipping them halves httpx's per-request cost. The httpx.AsyncClient
around the same transport (same pool) serves the gateway's own calls
(/ready, /openapi.json, webhook forwarding).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import httpx

from gateway.settings import Settings

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


class ServiceDown(Exception):
    """No replica of the service accepted the connection."""


class Pool:
    def __init__(self, name: str, urls: list[str], unhealthy_seconds: float):
        self.name = name
        self.urls = urls
        self.parsed = [httpx.URL(u) for u in urls]
        self.unhealthy_seconds = unhealthy_seconds
        self._next = itertools.cycle(range(len(urls)))
        self._down_until = [0.0] * len(urls)

    def candidates(self) -> list[int]:
        """Replica indexes to try, round robin; known-down replicas last (they may be back)."""
        n = len(self.urls)
        if n == 1:
            return [0]
        start = next(self._next)
        order = [(start + i) % n for i in range(n)]
        now = time.monotonic()
        return [i for i in order if self._down_until[i] <= now] + [i for i in order if self._down_until[i] > now]

    def mark_down(self, index: int) -> None:
        self._down_until[index] = time.monotonic() + self.unhealthy_seconds

    def mark_up(self, index: int) -> None:
        self._down_until[index] = 0.0


class Upstreams:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.timeout = settings.upstream_timeout_seconds
        self.pools = {name: Pool(name, urls, settings.unhealthy_seconds) for name, urls in settings.upstreams().items()}
        # httpcore scans every connection of a pool (a socket poll each) on every request and
        # every response close, so one big pool costs O(connections) per request under load.
        # Several small pools, taken in turn, keep that scan short.
        shards = max(1, settings.upstream_pool_shards)
        limits = httpx.Limits(max_connections=max(1, settings.max_connections // shards),
                              max_keepalive_connections=max(1, settings.max_keepalive_connections // shards),
                              keepalive_expiry=settings.upstream_keepalive_seconds)
        self.transports = [transport] if transport else [httpx.AsyncHTTPTransport(limits=limits)
                                                          for _ in range(shards)]
        self.transport = self.transports[0]
        self._shard = itertools.cycle(self.transports)
        timeout = httpx.Timeout(settings.upstream_timeout_seconds, connect=settings.connect_timeout_seconds)
        self._timeout_ext = timeout.as_dict()
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=self.transport)
        # Forward what the client sent, nothing more: no default Accept-Encoding or User-Agent.
        self.client.headers.clear()

    async def send(
        self, service: str, method: str, target: str, headers: Sequence[tuple[bytes, bytes]] | list[tuple[str, str]],
        content: bytes | None = None, *, stream: bool = True,
    ) -> httpx.Response:
        """Send to one replica of `service`; `target` is the raw path (and query) as the service sees it.

        With stream=True the caller must `aclose()` the response.
        """
        pool = self.pools[service]
        last: Exception | None = None
        raw_target = target.encode("latin-1") if isinstance(target, str) else target
        for index in pool.candidates():
            base = pool.parsed[index]
            url = base.copy_with(raw_path=base.raw_path.rstrip(b"/") + raw_target)
            request = httpx.Request(method, url, headers=headers, content=content,
                                    extensions={"timeout": self._timeout_ext})
            try:
                # httpx's timeouts are per phase; this is the whole wait for the answer's head.
                async with asyncio.timeout(self.timeout):
                    transport = next(self._shard)
                    try:
                        response = await transport.handle_async_request(request)
                    except (httpx.RemoteProtocolError, httpx.ReadError):
                        # A pooled keep-alive connection the service closed as we sent: a read can
                        # safely go again on a fresh one; a write is the caller's to report.
                        if method not in IDEMPOTENT:
                            raise
                        response = await transport.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                pool.mark_down(index)
                last = exc
                continue
            except TimeoutError as exc:
                raise httpx.ReadTimeout(f"{service} did not answer within {self.timeout} s", request=request) from exc
            if pool._down_until[index]:
                pool.mark_up(index)
            response.request = request
            if not stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            return response
        raise ServiceDown(f"{service} is not reachable ({type(last).__name__})") from last

    async def aclose(self) -> None:
        await self.client.aclose()
        for transport in self.transports[1:]:
            await transport.aclose()
