"""A request body on its way through the gateway, read only once the request is admitted.

A body that ends within `STREAM_AFTER` bytes is forwarded in one piece (with its Content-Length,
and to the next replica if one refuses the connection); a longer one (an upload) is streamed to the
service as it arrives, counted against the route's cap on the way: once the count passes the cap,
whatever Content-Length said, the upstream request is broken off and the client gets 413. The
gateway holds at most `STREAM_AFTER` bytes and a piece of a body at a time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from starlette.types import Receive

from gateway.settings import Settings
from gateway.upstream import UpstreamTimeout

# Routes whose body is a file: they take `upload_max_body_bytes` rather than `max_request_body_bytes`.
UPLOADS = (
    ("workflow", "POST", re.compile(r"/v1/requests/[^/]+/attachments/?")),
    ("workflow", "POST", re.compile(r"/v1/deliverables/[^/]+/attachments/?")),
)


def body_limit(settings: Settings, service: str, method: str, path: str) -> int:
    """The most a request's body may carry through the gateway: more on an upload route."""
    if any(service == s and method == m and p.fullmatch(path) for s, m, p in UPLOADS):
        return settings.upload_max_body_bytes
    return settings.max_request_body_bytes


# A body that ends within this many bytes is forwarded in one piece; a longer one is streamed.
STREAM_AFTER = 64 * 1024
CLIENT_GONE = "The request body ended early: the client went away before sending all of it."


def too_large(limit: int) -> str:
    return f"The request body is larger than {limit:,} bytes, the most a request through the gateway may carry."


async def read_head(receive: Receive) -> tuple[list[bytes], int, bool | None]:
    """The body's first pieces, until it ends or passes `STREAM_AFTER` bytes: (pieces, size, more),
    `more` None when the client went away before the end."""
    chunks: list[bytes] = []
    size = 0
    while size <= STREAM_AFTER:
        message = await receive()
        if message["type"] == "http.disconnect":
            return chunks, size, None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks, size, False
    return chunks, size, True


class _Stop(Exception):
    """Raised into the upstream request to break it off (the body passed the cap, or the client left)."""


class RequestBody:
    """A request body forwarded as it arrives (aiohttp sends an async iterable as it yields): its
    first pieces, already read, then each piece the client sends, counted against `limit`. Past the
    cap, or when the client goes away, the upstream request is broken off (the service never takes a
    cut body for a whole one) and `refusal` says what to answer."""

    def __init__(self, receive: Receive, limit: int, head: list[bytes], size: int):
        self.receive = receive
        self.limit = limit
        self.head = head
        self.size = size
        self.started = False
        self.done = False  # the last piece was taken
        self.over = False  # the count passed the cap
        self.gone = False  # the client went away
        self.waiting = False  # waiting for the client's next piece
        self._deadline: asyncio.Timeout | None = None
        self._seconds = 0.0

    def timed(self, deadline: asyncio.Timeout, seconds: float) -> None:
        self._deadline, self._seconds = deadline, seconds

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        self.started = True
        head, self.head = self.head, []
        for chunk in head:
            yield chunk
        del head
        loop = asyncio.get_running_loop()
        while True:
            self.waiting = True
            message = await self.receive()
            self.waiting = False
            if message["type"] == "http.disconnect":
                self.gone = True
                raise _Stop("the client went away")
            chunk = message.get("body", b"")
            if chunk:
                self.size += len(chunk)
                if self.size > self.limit:
                    self.over = True
                    raise _Stop("the body passed the cap")
                if self._deadline is not None:  # the answer's wait counts from the last piece
                    self._deadline.reschedule(loop.time() + self._seconds)
                yield chunk
            if not message.get("more_body", False):
                self.done = True
                return

    def refusal(self, exc: Exception) -> tuple[int, str] | None:
        """The answer when the upstream request failed because of the body, not the service."""
        if self.over:
            return 413, too_large(self.limit)
        if self.gone:
            return 400, CLIENT_GONE
        if self.waiting and isinstance(exc, UpstreamTimeout):
            return 408, f"The request body stopped arriving: nothing came for {self._seconds:g} seconds."
        return None
