"""The services behind the gateway: one aiohttp connection pool, several base URLs per service.

Requests go round robin over a service's replicas. A replica that refuses the
connection is skipped for `unhealthy_seconds` and the request moves on to the
next one; that is always safe because nothing was sent. Any other failure is
the caller's to report: `ServiceDown` (503) when no replica accepts a
connection, `UpstreamTimeout` (504) when one is too slow, `UpstreamBroken` (502)
when the connection broke or the answer could not be read.

The client is aiohttp's: on this machine its per-request cost is a fraction of
httpx/httpcore's, and its pool is a per-host queue (no scan of every pooled
connection per request). It is set up as a reverse proxy needs it: no cookies,
redirects, proxies from the environment or default headers (Accept, User-Agent,
Accept-Encoding, Content-Type), and bodies passed through as the service encoded
them (no decompression). Pooled connections are dropped after
`upstream_keepalive_seconds` idle, before the services' own keep-alive timeout.

A read (GET, HEAD, OPTIONS) that meets a pooled connection the service has just
closed is sent once more; a write never is, PUT and DELETE included (aiohttp's
own resend of "idempotent" methods is switched off for that reason).

A request body is bytes, or a `Streamed` body forwarded as it arrives from the
client (gateway/proxy.py `RequestBody`): such a body goes to the next replica
only while none of it was sent, is never resent, and moves the timeout on with
each piece, so the wait for the answer is counted from its last byte.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.settings import Settings

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# Request headers aiohttp would otherwise add on its own: the service gets what the client sent.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class Streamed(Protocol):
    """A request body sent as it arrives (an async iterable of bytes)."""

    started: bool  # a piece of it was taken: it cannot go to another replica, nor again

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def timed(self, deadline: asyncio.Timeout, seconds: float) -> None:
        """Move `deadline` to `seconds` after each piece that arrives."""


class UpstreamError(Exception):
    """A request to a service failed without an answer."""


class ServiceDown(UpstreamError):
    """No replica of the service accepted the connection."""


class UpstreamTimeout(UpstreamError):
    """The service did not answer (or stopped sending) within the timeout."""


class UpstreamBroken(UpstreamError):
    """The connection broke or the answer could not be read."""


class Pool:
    def __init__(self, name: str, urls: list[str], unhealthy_seconds: float):
        self.name = name
        self.urls = urls
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


class Buffered:
    """A whole answer read into memory (`send(..., stream=False)`)."""

    def __init__(self, status_code: int, headers: CIMultiDictProxy[str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Upstreams:
    def __init__(self, settings: Settings):
        self.timeout = settings.upstream_timeout_seconds
        self.pools = {name: Pool(name, urls, settings.unhealthy_seconds) for name, urls in settings.upstreams().items()}
        # host:port of every replica -> its service (to recognise a service's own address in an answer)
        self.services_at = {urlsplit(u).netloc.lower(): name for name, pool in self.pools.items() for u in pool.urls}
        connector = aiohttp.TCPConnector(
            limit=max(1, settings.max_connections),
            limit_per_host=0,
            keepalive_timeout=settings.upstream_keepalive_seconds,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=SKIP_AUTO_HEADERS,
            # The wait for the answer's head is bounded as a whole in send(); each later read of the
            # body by sock_read, so a service that stops half way is a timeout too.
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=settings.connect_timeout_seconds, sock_read=settings.upstream_timeout_seconds
            ),
        )
        # aiohttp resends GET, HEAD, OPTIONS, TRACE, PUT and DELETE once on a connection the server
        # closed; the gateway resends reads only (send() does it), never a write.
        if not hasattr(self.session, "_retry_connection"):
            raise RuntimeError("this aiohttp has no _retry_connection switch; check the resend rule")
        self.session._retry_connection = False

    async def send(
        self,
        service: str,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        content: bytes | Streamed | None = None,
    ) -> aiohttp.ClientResponse:
        """Send to one replica of `service`; `target` is the raw path (and query) as the service sees it.

        The answer's head has been read; the caller must `release()` the response once it has
        read the body (or `close()` it when it gives up half way).
        """
        return await self._send(service, method, target, headers, content)

    async def fetch(
        self,
        service: str,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        content: bytes | None = None,
    ) -> Buffered:
        """`send`, with the whole answer read into memory (within the same timeout)."""
        response = await self._send(service, method, target, headers, content, read=True)
        assert isinstance(response, Buffered)
        return response

    async def _send(
        self,
        service: str,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        content: bytes | Streamed | None,
        *,
        read: bool = False,
    ) -> Any:
        pool = self.pools[service]
        hdrs = list(headers)
        last: Exception | None = None
        for index in pool.candidates():
            url = URL(pool.urls[index] + target, encoded=True)
            streamed = None if content is None or isinstance(content, bytes) else content
            if streamed is not None and streamed.started:
                break  # part of the body went to a replica that then failed: it cannot go again
            try:
                async with asyncio.timeout(self.timeout) as deadline:
                    if streamed is not None:
                        streamed.timed(deadline, self.timeout)
                    try:
                        response = await self.session.request(
                            method, url, headers=hdrs, data=content, allow_redirects=False
                        )
                    except aiohttp.ClientConnectorError:
                        raise
                    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                        # A pooled keep-alive connection the service closed as we sent: a read can
                        # safely go again; a write is the caller's to report.
                        if method not in IDEMPOTENT or streamed is not None:
                            raise
                        response = await self.session.request(
                            method, url, headers=hdrs, data=content, allow_redirects=False
                        )
                    if read:
                        try:
                            body = await response.read()
                        finally:
                            response.release()
                        return self._up(pool, index, Buffered(response.status, response.headers, body))
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                pool.mark_down(index)
                last = exc
                continue
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise UpstreamTimeout(f"{service} did not answer within {self.timeout} s") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamBroken(f"{service}: {type(exc).__name__}: {exc}") from exc
            return self._up(pool, index, response)
        raise ServiceDown(f"{service} is not reachable ({type(last).__name__})") from last

    @staticmethod
    def _up(pool: Pool, index: int, response: Any) -> Any:
        if pool._down_until[index]:
            pool.mark_up(index)
        return response

    async def get_url(self, url: str, timeout: float) -> Buffered:
        """A plain GET of a full URL (a replica's /ready), read whole."""
        try:
            async with asyncio.timeout(timeout):
                async with self.session.get(url, allow_redirects=False) as r:
                    return Buffered(r.status, r.headers, await r.read())
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{url} did not answer within {timeout} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ServiceDown(f"{url} is not reachable") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBroken(f"{url}: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self.session.close()
