"""The web console at `/`: every path that is not part of the API is forwarded to the console app.

The browser then talks to one origin (the console's session cookie and the API share it, and no
CORS is needed). API paths (the services' prefixes, handled by the proxy before this layer, the
gateway's own routes, `/gateway/...` and `/webhooks/...`) never reach the console. The console
calls the API back through the gateway with the signed-in person's token, like any client.
"""

from __future__ import annotations

import httpx
import structlog
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("pitcrew.gateway.console")

RESERVED = ("/gateway/", "/webhooks/")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
UNAVAILABLE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Console unavailable</title>"
    b"<h1>The Pitcrew console is unavailable</h1><p>The web console is not answering right now. "
    b"The API still works (see <a href=/docs>/docs</a>). Try again in a moment.</p></html>"
)


class ConsoleLayer:
    """Pure ASGI: API paths go to `app`; everything else is forwarded to the console at `url`."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], url: str, max_body: int, timeout: float = 30.0):
        self.app = app
        self.routes = routes
        self.url = url.rstrip("/")
        self.max_body = max_body
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=2.0), follow_redirects=False)

    def is_api(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if path.startswith(RESERVED):
            return True
        return any(route.matches(scope)[0] != Match.NONE for route in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.url or self.is_api(scope):
            await self.app(scope, receive, send)
            return
        body = await self._body(receive)
        if body is None:
            await _answer(send, 413, b"The request is too large.", b"text/plain; charset=utf-8")
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        # The client's own X-Forwarded-* are dropped: the console reads only what this gateway saw.
        forwarded = [
            (k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-forwarded-")
        ]
        host = next((v for k, v in headers if k.lower() == "host"), "")
        client = scope.get("client") or ("", 0)
        forwarded += [
            ("x-forwarded-host", host),
            ("x-forwarded-proto", scope.get("scheme", "http")),
            ("x-forwarded-for", client[0]),
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        target = (
            self.url + scope.get("raw_path", scope["path"].encode()).decode("latin-1") + (f"?{query}" if query else "")
        )
        try:
            request = self.client.build_request(scope["method"], target, headers=forwarded, content=body)
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.warning("console_unavailable", error=str(exc))
            await _answer(send, 503, UNAVAILABLE, b"text/html; charset=utf-8")
            return
        try:
            out = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.multi_items()
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
            ]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_bytes():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def aclose(self) -> None:
        await self.client.aclose()


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
