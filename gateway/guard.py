"""The gateway's own routes, guarded before anything reads their bodies.

A pure ASGI layer inside the request-context middleware (request id, metrics, access
log) and outside FastAPI's routing, which reads and validates a body before it solves
a route's dependencies. Here, for `/gateway/...` the caller is admitted first
(gateway.access: 401, 403, 429 without reading a byte of the body) and the principal
handed to the route in the request state. Every body is then bounded by its route
class (documented in docs/gateway.md): `/gateway/...` and everything else
`api_max_body_bytes`, `/webhooks/...` `webhook_max_body_bytes`; a declared length over
the limit is refused before reading, a streamed one as soon as it passes it (413).
Webhook routes verify their signature headers before they read (gateway.api).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access import RateLimited, RouteLabel, admit, refusal
from gateway.state import Slot
from shared.errors import DomainError

GUARDED = "/gateway"
WEBHOOKS = "/webhooks/"
_REFUSED = RouteLabel("/gateway/* (refused)")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than this route accepts ({limit:,} bytes).")


def limited(receive: Receive, limit: int, declared: int | None) -> Receive:
    """`receive` that raises BodyTooLarge once the body passes `limit` (at once when it says it will)."""
    size = 0

    async def receive_limited() -> Message:
        nonlocal size
        if declared is not None and declared > limit:
            raise BodyTooLarge(limit)
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited


def declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class GuardMiddleware:
    def __init__(self, app: ASGIApp, slot: Slot):
        self.app = app
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        settings = self.slot.get().settings
        headers = Headers(scope=scope)
        declared = declared_length(headers)
        limit = settings.api_max_body_bytes
        if path.startswith(WEBHOOKS):
            limit = settings.webhook_max_body_bytes
        elif path == GUARDED or path.startswith(GUARDED + "/"):
            try:
                principal = await admit(
                    self.slot.get(),
                    headers.get("authorization"),
                    headers.get("x-api-key"),
                    "gateway",
                    scope["method"],
                    path[len(GUARDED) :] or "/",
                )
                if declared is not None and declared > limit:
                    raise BodyTooLarge(limit)
            except (DomainError, RateLimited, BodyTooLarge) as exc:
                scope["route"] = _REFUSED
                await refusal(exc, path)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, limited(receive, limit, declared), send)
